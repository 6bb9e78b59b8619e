package delivery

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// The embedded store's health. JetStream's file store keeps the first write error it meets
// (ENOSPC, EIO, EROFS) and from then on refuses every write of that stream without answering,
// until the server restarts. So pbxbridge keeps the disk from filling (webhooks are refused
// while less than diskReserve is free), notices a write error where the server reports it, and
// heals by itself: once the file system takes writes again it restarts JetStream in-process,
// which recovers every stream from disk with the error cleared. Nothing acknowledged is lost
// (it was on disk before it was acknowledged) and nothing is delivered twice (consumer state
// is recovered with the streams; held events are redelivered only to this process).

var (
	// ErrStoreFailed is a write the store could not make; Enqueue returns it, wrapped with
	// the cause, until the store has healed.
	ErrStoreFailed = errors.New("store write failed")
	// ErrDiskFull is returned while the data directory's file system has less than its
	// reserve free.
	ErrDiskFull = errors.New("disk full")
)

const (
	// maxDiskReserve is what pbxbridge keeps free on the data directory's file system (an
	// eighth of the file system if that is smaller): room for the store's own block and
	// index writes, so that it never meets ENOSPC through webhooks.
	maxDiskReserve = 16 << 20
	// watchEvery is how often the free space is measured and a failed store is tried again.
	watchEvery = 500 * time.Millisecond
	// defaultMaxStoreCap is the default max_store; on a file system smaller than four times
	// it, the default is a quarter of the file system.
	defaultMaxStoreCap = 10 << 30
	// minJetStreamStore is the least JetStream's own store limit is set to (see
	// jetStreamMaxStore).
	minJetStreamStore = 1 << 40
)

// storeHealth is the state of the embedded store's disk.
type storeHealth struct {
	dir     string // the data directory, as the operator wrote it
	size    int64  // of its file system
	reserve int64  // kept free

	mu     sync.Mutex
	free   int64  // at the last measurement
	cause  string // of the first write error; "" while the store writes
	errors int    // write errors reported so far
	failed chan struct{}
}

func newStoreHealth(dir string) (*storeHealth, error) {
	size, free, err := diskSpace(dir)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", dir, err)
	}
	h := &storeHealth{dir: dir, size: size, free: free, reserve: min(maxDiskReserve, size/8), failed: make(chan struct{})}
	metrics.diskFree.Set(float64(free))
	metrics.storeWriteFailed.Set(0)
	return h, nil
}

// diskSpace is the size of dir's file system and what an unprivileged process may still write.
func diskSpace(dir string) (size, free int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}

// defaultMaxStore is max_store when the configuration gives none: 10 GiB, or a quarter of the
// data directory's file system if that is smaller. The rule depends on the disk's size, not on
// what happens to be free, so it is the same at every start.
func (h *storeHealth) defaultMaxStore() int64 {
	if h == nil {
		return defaultMaxStoreCap
	}
	return min(defaultMaxStoreCap, h.size/4)
}

// jetStreamMaxStore is JetStream's own store limit. Left unset, JetStream takes 75 % of the
// disk free at start, and refuses to recover streams whose limits exceed it: a gateway with
// events on a disk that has filled would not start. Set explicitly, it only has to hold the
// streams' limits (max_store, a quarter more for dead letters, the buckets); room to raise
// max_store by a reload is left. The disk itself is watched by storeHealth.
func jetStreamMaxStore(maxStore int64) int64 {
	return max(2*maxStore, minJetStreamStore)
}

// writeError returns the error webhooks get while the store cannot write, or nil.
func (h *storeHealth) writeError() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == "" {
		return nil
	}
	return fmt.Errorf("%w: %s on %s", ErrStoreFailed, h.cause, h.dir)
}

// diskFull returns the error webhooks get while the disk has less than the reserve free, or nil.
func (h *storeHealth) diskFull() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.free >= h.reserve {
		return nil
	}
	return fmt.Errorf("%w: %s free on %s, pbxbridge keeps %s free", ErrDiskFull, humanize.IBytes(uint64(h.free)), h.dir, humanize.IBytes(uint64(h.reserve)))
}

// failedSignal is closed when a write error is reported, until the store heals.
func (h *storeHealth) failedSignal() <-chan struct{} {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// reportWriteError records a write error of the store; the first one counts.
func (h *storeHealth) reportWriteError(log *zap.Logger, cause string) {
	h.mu.Lock()
	h.errors++
	if h.cause != "" {
		h.mu.Unlock()
		return
	}
	h.cause = cause
	close(h.failed)
	h.mu.Unlock()
	metrics.storeWriteFailed.Set(1)
	metrics.queueReady.Set(0)
	log.Error("store write failed: webhooks are refused until the file system takes writes again, then the store heals by itself",
		zap.String("data_dir", h.dir), zap.String("cause", cause))
}

// errorCount is how many write errors have been reported, for healed.
func (h *storeHealth) errorCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errors
}

// healed clears the write error, unless another one was reported since errorCount said
// before: the store stays failed and is healed again.
func (h *storeHealth) healed(before int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.errors != before {
		return false
	}
	h.cause = ""
	h.failed = make(chan struct{})
	metrics.storeWriteFailed.Set(0)
	return true
}

// measure refreshes the free space; it reports whether the file system takes writes again
// after a write error (room beyond the reserve, and a small file can be written and synced).
func (h *storeHealth) measure() (recovered bool) {
	_, free, err := diskSpace(h.dir)
	if err != nil {
		return false
	}
	h.mu.Lock()
	h.free = free
	failed := h.cause != ""
	h.mu.Unlock()
	metrics.diskFree.Set(float64(free))
	return failed && free >= h.reserve && probeWrite(h.dir) == nil
}

// probeWrite writes, syncs and removes a small file in dir: a read-only or failing file system
// refuses it.
func probeWrite(dir string) error {
	path := filepath.Join(dir, "write-probe")
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}

// writeErrorCause is the operating system's words in one of the server's write error log
// lines ("Filestore [PBX_EVENTS] Critical write error: write …/1.blk: no space left on
// device"), or "" for any other line.
func writeErrorCause(line string) string {
	if !strings.Contains(strings.ToLower(line), "critical write error") {
		return ""
	}
	return line[strings.LastIndex(line, ": ")+2:]
}

// writeErrno is the operating system's words (no path) for an error that means the file
// system does not take writes, or "" for any other error.
func writeErrno(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) && (errno == syscall.ENOSPC || errno == syscall.EIO || errno == syscall.EROFS || errno == syscall.EDQUOT) {
		return errno.Error()
	}
	return ""
}

// watchStore measures the disk and heals a failed store, until the engine closes.
func (e *Engine) watchStore() {
	defer close(e.watchDone)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-e.watchQuit:
			return
		case <-tick.C:
		}
		if e.health.measure() {
			e.heal()
		}
	}
}

// heal restarts JetStream in-process, which clears the file store's write error, and checks
// the streams. On failure the store stays failed and the next measurement tries again.
func (e *Engine) heal() {
	cause, reported := e.health.writeError(), e.health.errorCount()
	start := time.Now()
	if e.srv.JetStreamEnabled() {
		if err := e.srv.ShutdownJetStream(); err != nil {
			e.log.Warn("healing the store: stopping JetStream", zapErr(err))
			return
		}
	}
	if err := e.srv.EnableJetStream(e.jetStreamConfig()); err != nil {
		e.log.Warn("healing the store: starting JetStream again", zapErr(err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.ensureStreams(ctx); err != nil {
		e.log.Warn("healing the store: checking the streams", zapErr(err))
		return
	}
	if err := e.newPublisher(); err != nil {
		e.log.Warn("healing the store: a new publisher", zapErr(err))
		return
	}
	if !e.health.healed(reported) {
		e.log.Warn("healing the store: another write failed meanwhile; trying again")
		return
	}
	e.reportReady()
	e.log.Info("store healed: the file system takes writes again and JetStream has recovered every stream from disk",
		zap.String("data_dir", e.cfg.DataDir), zap.NamedError("was", cause), zap.Duration("took", time.Since(start)))
}

func (e *Engine) jetStreamConfig() *server.JetStreamConfig {
	return &server.JetStreamConfig{
		StoreDir:     filepath.Join(e.cfg.DataDir, "jetstream"), // as Options.StoreDir: the server adds its own "jetstream"
		MaxStore:     jetStreamMaxStore(e.maxStore()),
		MaxMemory:    jetStreamMaxMemory,
		SyncInterval: syncInterval,
		Strict:       true,
	}
}

// checkDiskRoom warns when the disk cannot hold what max_store allows: the store then fills
// the disk first, and webhooks are refused while less than the reserve is free.
func (e *Engine) checkDiskRoom() {
	h := e.health
	if h == nil {
		return
	}
	maxStore := e.maxStore()
	asks := maxStore + maxStore/4
	_, free, err := diskSpace(h.dir)
	if err != nil {
		return
	}
	held := dirBytes(filepath.Join(h.dir, "jetstream"))
	room := free + held - h.reserve
	if room >= asks {
		return
	}
	e.log.Warn(fmt.Sprintf("max_store %s asks for up to %s on the file system of data_dir %s (the events and a quarter more for dead letters), "+
		"which has %s free besides the %s the store holds: set max_store to at most %s, or free disk space; "+
		"until then webhooks are refused (503, /healthz \"disk full\") whenever less than %s is free",
		humanize.IBytes(uint64(maxStore)), humanize.IBytes(uint64(asks)), h.dir, humanize.IBytes(uint64(free)), humanize.IBytes(uint64(held)),
		humanize.IBytes(uint64(max(room, 0)*4/5)), humanize.IBytes(uint64(h.reserve))))
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
