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
// message written so far, with one fsync. The server runs without SyncAlways, which would sync
// each stored message on its own and also every deletion and consumer state write, though a
// lost deletion or acknowledgement costs only a re-delivery. Without it the server still writes
// each message to its block file before it acknowledges the publish (a single server flushes
// in place), so after a batch's acks one fsync of the stream's last block makes the whole batch
// durable: the group commit's fsync.
//
// The file layout (<store>/<account>/streams/<stream>/msgs/<index>.blk, new messages in the
// block of the highest index) is the server's; TestBlockSyncerSyncsWhatWasStored notices a
// change.
type blockSyncer struct {
	dir string

	mu   sync.Mutex
	last int // index of the block last synced; 0 until known
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

// sync makes every message the stream has acknowledged so far durable.
func (s *blockSyncer) sync() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	newBlock := false
	for attempt := 1; ; attempt++ {
		if s.last == 0 {
			if err := s.findLast(); err != nil {
				if errors.Is(err, fs.ErrNotExist) && attempt < maxSyncAttempts {
					continue
				}
				return err
			}
			newBlock = true
		}
		// A full block is followed by the next index; the messages of one batch may span both.
		for fileExists(s.block(s.last + 1)) {
			if err := syncPath(s.block(s.last)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			s.last++
			newBlock = true
		}
		err := syncPath(s.block(s.last))
		if errors.Is(err, fs.ErrNotExist) && attempt < maxSyncAttempts {
			// The block emptied (every event in it delivered) and the store removed it for a
			// newer one, perhaps while this looked for it: find the last again.
			s.last = 0
			continue
		}
		if err != nil {
			return err
		}
		break
	}
	if newBlock { // its directory entry
		return syncPath(s.dir)
	}
	return nil
}

// maxSyncAttempts bounds the search for the last block while the store keeps replacing it.
const maxSyncAttempts = 10

// findLast finds the block of the highest index, where the store writes.
func (s *blockSyncer) findLast() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("finding the stream's blocks: %w", err)
	}
	s.last = 0
	for _, e := range entries {
		if n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".blk")); err == nil && strings.HasSuffix(e.Name(), ".blk") {
			s.last = max(s.last, n)
		}
	}
	if s.last == 0 {
		return fmt.Errorf("no message block in %s: %w", s.dir, fs.ErrNotExist)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
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
