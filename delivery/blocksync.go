package delivery

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
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

// newBlockSyncer returns nil (nothing to sync) for a store that is not on this machine.
func newBlockSyncer(storeDir, account, stream string) *blockSyncer {
	if storeDir == "" {
		return nil
	}
	return &blockSyncer{dir: filepath.Join(storeDir, account, "streams", stream, "msgs")}
}

func (s *blockSyncer) block(index int) string {
	return filepath.Join(s.dir, strconv.Itoa(index)+".blk")
}

// sync makes every message the stream has acknowledged so far durable. Those are in the blocks
// that exist now from the last one synced on: new messages only go to the block of the highest
// index, which may have been replaced several times since (see below). A block gone by the
// time it is opened had emptied, its events delivered.
func (s *blockSyncer) sync() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	blocks, err := s.blocks()
	if err != nil {
		return err
	}
	last := blocks[len(blocks)-1]
	for _, b := range blocks {
		if b < s.last {
			continue
		}
		if err := syncPath(s.block(b)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if last != s.last { // a block created since: its directory entry
		if err := syncPath(s.dir); err != nil {
			return err
		}
		s.last = last
	}
	return nil
}

// blocks lists the indices of the stream's blocks in ascending order. When a delivery empties
// the stream, the store replaces its last block by one of the next index, so indices need not
// be consecutive.
func (s *blockSyncer) blocks() ([]int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("finding the stream's blocks: %w", err)
	}
	var blocks []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if n, err := strconv.Atoi(name); ok && err == nil {
			blocks = append(blocks, n)
		}
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no message block in %s", s.dir)
	}
	slices.Sort(blocks)
	return blocks, nil
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
