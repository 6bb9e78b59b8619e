// Package delivery is pbxbridge's queue and delivery engine: canonical events go into a NATS
// JetStream stream through a group committer, and one dispatcher per target delivers them over
// HTTP with per-call lanes, retries and dead letters. It knows nothing of PBXs or of Caddy.
package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Config is what the engine needs to open its store.
type Config struct {
	// DataDir holds the embedded JetStream store. Ignored with NATS.
	DataDir string
	// MaxStore caps the events stream; when full, Enqueue fails with ErrFull. Default: 10 GiB,
	// or a quarter of the data directory's file system if that is smaller.
	MaxStore int64
	// DedupeWindow is how long a re-sent event id is recognised.
	DedupeWindow time.Duration
	// NATS, when set, is an existing cluster to use instead of the embedded server.
	NATS *NATSConfig
	// Prefix names the streams, subjects and bucket ("pbx" by default), so that several
	// gateways' data can share one cluster.
	Prefix string
	// Tracer, when set, exports a span per delivery attempt of events that carry a trace
	// context (docs/tracing.md). Apply sets it.
	Tracer trace.Tracer
}

// NATSConfig is an external NATS JetStream cluster.
type NATSConfig struct {
	URLs  []string
	Creds string
	// TLS, when set, secures the connection (own CAs, a client certificate, a server name).
	TLS      *tls.Config
	Replicas int
}

// Errors that Enqueue returns; the webhook handler answers them with 503.
var (
	ErrNotReady   = errors.New("queue not ready")
	ErrFull       = errors.New("store full")
	ErrNotDurable = errors.New("no durable acknowledgement in time")
)

const (
	defaultPrefix = "pbx"
	// DefaultDedupeWindow is Config.DedupeWindow when not set.
	DefaultDedupeWindow = 24 * time.Hour
	// jetStreamMaxMemory bounds the embedded server's memory storage, which pbxbridge does not use.
	jetStreamMaxMemory = 64 << 20
	// ackWait is how long JetStream waits before redelivering an unacknowledged message; the
	// dispatcher keeps held messages alive with InProgress well within it. After a crash,
	// held messages come back after at most this long.
	ackWait = 10 * time.Second
	// syncInterval is how often the embedded server syncs what the group commit does not.
	syncInterval = 10 * time.Second
)

// Engine owns the JetStream connection (and the embedded server), the group committer and the
// dispatchers. It outlives config reloads: the Caddy app keeps it in a usage pool.
type Engine struct {
	cfg Config
	log *zap.Logger
	srv *server.Server // nil with an external cluster
	nc  *nats.Conn
	js  jetstream.JetStream
	// publisher is the group commit's JetStream context, made anew when the store heals: the
	// server never answers a publish that met a write error, and such a publish would stay
	// pending in its context for good, counting against the pending limit.
	publisher atomic.Pointer[jetstream.JetStream]
	lock      *os.File
	// heapLimitStop ends the bound on the heap's headroom that the embedded server's
	// deduplication map calls for (nil with a cluster).
	heapLimitStop func()
	names         names
	commit        *committer
	// eventsSync and deadSync make stored events and dead letters durable (nil with a
	// cluster, whose servers keep their own durability settings).
	eventsSync, deadSync *blockSyncer
	// health watches the embedded store's disk and heals the store after a write error (nil
	// with a cluster); watchStore runs until watchQuit closes.
	health               *storeHealth
	watchQuit, watchDone chan struct{}

	mu          sync.Mutex
	dispatchers map[string]*dispatcher
	ready       atomic.Bool
	closed      atomic.Bool
	tracer      atomic.Pointer[trace.Tracer] // nil while tracing is off
	calls       atomic.Pointer[Calls]
	commands    atomic.Pointer[Commands]
	crm         atomic.Pointer[jetstream.KeyValue]
	// routed are the accounts some target's consumer takes events from. JetStream drops a
	// message nobody is interested in, so Enqueue refuses events of any other account.
	routed atomic.Pointer[map[Account]bool]
	// startSeq is the events stream's last sequence when this engine first set it up: what
	// earlier runs stored, which a crash recovery may have lost (see originalLost).
	startSeq     uint64
	startSeqOnce sync.Once
}

// names are the JetStream names derived from the prefix.
type names struct {
	prefix, events, dead, history, calls, state, commands, crm string
}

func newNames(prefix string) names {
	up := strings.ToUpper(prefix)
	return names{prefix: prefix, events: up + "_EVENTS", dead: up + "_DEAD", history: up + "_HISTORY", calls: prefix + "_calls", state: prefix + "_state", commands: prefix + "_commands", crm: prefix + "_crm"}
}

// subject is where an event of a PBX account is stored: <prefix>.<pbx>.<account>.<type>.
func (n names) subject(pbx, account, typ string) string {
	return n.prefix + "." + pbx + "." + account + "." + typ
}

// deadSubject is where a target's dead letter for an event is stored.
func (n names) deadSubject(target, id string) string {
	return n.prefix + "_dead." + target + "." + id
}

func (cfg *Config) withDefaults(defaultMaxStore int64) {
	if cfg.Prefix == "" {
		cfg.Prefix = defaultPrefix
	}
	if cfg.MaxStore <= 0 {
		cfg.MaxStore = defaultMaxStore
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = DefaultDedupeWindow
	}
}

// Open starts (or connects to) JetStream. It does not create streams: Apply does.
func Open(cfg Config, log *zap.Logger) (*Engine, error) {
	e := &Engine{cfg: cfg, log: log, dispatchers: map[string]*dispatcher{}}
	var err error
	if cfg.NATS != nil {
		e.cfg.withDefaults(defaultMaxStoreCap)
		e.names = newNames(e.cfg.Prefix)
		err = e.connectCluster()
	} else {
		err = e.startEmbedded()
	}
	if err != nil {
		e.closeConn()
		return nil, err
	}
	e.js, err = jetstream.New(e.nc)
	if err != nil {
		e.closeConn()
		return nil, err
	}
	if err = e.newPublisher(); err != nil {
		e.closeConn()
		return nil, err
	}
	e.commit = newCommitter(e)
	if e.health != nil {
		e.watchQuit, e.watchDone = make(chan struct{}), make(chan struct{})
		go e.watchStore()
	}
	return e, nil
}

func (e *Engine) newPublisher() error {
	js, err := jetstream.New(e.nc)
	if err == nil {
		e.publisher.Store(&js)
	}
	return err
}

// Ready reports whether the queue has started: streams and consumers exist and the
// connection is up. Whether the store can write now is Writable's answer.
func (e *Engine) Ready() bool {
	return e.ready.Load() && e.nc.IsConnected()
}

// Writable returns why the store cannot take webhooks now (a write error it has not healed
// from yet, or a disk without room), or nil. Webhooks and commands are refused meanwhile.
func (e *Engine) Writable() error {
	if err := e.health.writeError(); err != nil {
		return err
	}
	return e.health.diskFull()
}

// reportReady sets pbxbridge_queue_ready from Ready and the store's health; the dispatchers'
// observe loop also turns it to 0 while JetStream does not answer over a live connection (no
// quorum).
func (e *Engine) reportReady() {
	metrics.queueReady.Set(boolGauge(e.takesWrites()))
}

// takesWrites is Ready with a store that has no write error: pbxbridge_queue_ready and the
// status's "ready".
func (e *Engine) takesWrites() bool {
	return e.Ready() && e.health.writeError() == nil
}

// Close stops the dispatchers, letting in-flight attempts finish until ctx is done, and then
// closes the store. Held, unacknowledged events are redelivered on the next start.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed.Swap(true) {
		return nil
	}
	e.ready.Store(false)
	if e.watchQuit != nil {
		close(e.watchQuit)
		<-e.watchDone
	}
	e.mu.Lock()
	ds := make([]*dispatcher, 0, len(e.dispatchers))
	for _, d := range e.dispatchers {
		ds = append(ds, d)
	}
	e.dispatchers = map[string]*dispatcher{}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Add(1)
		go func() { defer wg.Done(); d.stop(ctx) }()
	}
	wg.Wait()
	e.commit.close()
	e.closeConn()
	metrics.queueReady.Set(0)
	return nil
}

func (e *Engine) closeConn() {
	if e.nc != nil {
		e.nc.Close()
	}
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	if e.heapLimitStop != nil {
		e.heapLimitStop()
	}
	if e.lock != nil {
		e.lock.Close()
	}
}

// natsLogger sends the embedded server's log to zap. The server reports a store's write error
// only in its log (the publish that met it gets no answer), so writeError hears of it there.
type natsLogger struct {
	l          *zap.Logger
	writeError func(cause string)
}

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	n.l.Error(line)
	if cause := writeErrorCause(line); cause != "" {
		n.writeError(cause)
	}
}
func (n natsLogger) Debugf(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any) {}
