package delivery

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// blockSyncer makes what the embedded server has written to one stream durable, for every
// message written so far, usually with one fsync. The server runs without SyncAlways, which
// would sync each stored message on its own and also every deletion and consumer state write,
// though a lost deletion or acknowledgement costs only a re-delivery. Without it the server
// still writes each message to its block file before it acknowledges the publish (a single
// server flushes in place), so after a batch's acks an fsync of the stream's last block (and of
// any block created since the previous sync) makes the whole batch durable: the group commit's
// fsync.
//
// The file layout (<store>/<account>/streams/<stream>/msgs/<index>.blk, new messages in the
// block of the highest index) is the server's; TestBlockSyncerSyncsWhatWasStored notices a
// change.
type blockSyncer struct {
	dir string

	mu   sync.Mutex
	last int // highest block index at the last sync; 0 before the first
}

func newBlockSyncer(storeDir, account, stream string) *blockSyncer {
	return &blockSyncer{dir: filepath.Join(storeDir, account, "streams", stream, "msgs")}
}

func (s *blockSyncer) block(index int) string {
	return filepath.Join(s.dir, strconv.Itoa(index)+".blk")
}

// sync makes every message the stream has acknowledged so far durable. Those are in the blocks
// that exist now from the last one synced on: new messages only go to the block of the highest
// index, and when a delivery empties the stream the store replaces that block by one of the
// next index, so indices need not be consecutive. A block gone by the time it is opened had
// emptied, its events delivered. A nil syncer (a cluster) syncs nothing.
func (s *blockSyncer) sync() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("finding the stream's blocks: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("finding the stream's blocks: %w", err)
	}
	last := 0
	for _, name := range names {
		index, ok := strings.CutSuffix(name, ".blk")
		n, err := strconv.Atoi(index)
		if !ok || err != nil {
			continue
		}
		last = max(last, n)
		if n < s.last {
			continue
		}
		if err := syncPath(s.block(n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	switch {
	case last == 0:
		return fmt.Errorf("no message block in %s", s.dir)
	case last < s.last: // numbered afresh (the stream was made anew)
		if err := syncPath(s.block(last)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if last != s.last { // a block created since: its directory entry
		if err := dir.Sync(); err != nil {
			return err
		}
		s.last = last
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
