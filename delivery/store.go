package delivery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/internal/heaplimit"
)

// The store: JetStream, embedded (startEmbedded, the data directory locked) or an existing
// cluster (connectCluster), and its buckets beside the streams of topology.go: open calls
// (calls.go), commands (commands.go) and the operator's state (paused targets, here).

// startEmbedded runs JetStream in this process, on the data directory.
func (e *Engine) startEmbedded() error {
	dir := e.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir %s cannot be created (%w): set data_dir to a directory pbxbridge may write", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return err
	}
	e.lock = lock
	if e.health, err = newStoreHealth(dir); err != nil {
		return err
	}
	e.cfg.withDefaults(e.health.defaultMaxStore())
	e.names = newNames(e.cfg.Prefix)
	opts := &server.Options{
		ServerName: "pbxbridge",
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		// No SyncAlways: the group commit syncs stored events itself, once per batch
		// (blockSyncer). Deletions and consumer state, whose loss in a power cut means a
		// re-delivery, are synced every syncInterval.
		SyncInterval:       syncInterval,
		JetStreamMaxMemory: jetStreamMaxMemory,
		// Explicit: left unset, JetStream would take 75 % of the disk free at start and
		// could refuse to recover streams already on a disk that has filled.
		JetStreamMaxStore: jetStreamMaxStore(e.cfg.MaxStore),
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	srv.SetLoggerV2(natsLogger{l: e.log.Named("nats"), writeError: func(cause string) {
		e.health.reportWriteError(e.log, cause)
	}}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("embedded NATS did not start within 30s")
	}
	e.srv = srv
	e.heapLimitStop = heaplimit.Start()
	e.eventsSync = newBlockSyncer(srv.StoreDir(), srv.GlobalAccount().Name, e.names.events)
	e.deadSync = newBlockSyncer(srv.StoreDir(), srv.GlobalAccount().Name, e.names.dead)
	e.nc, err = nats.Connect("", nats.InProcessServer(srv), nats.Name("pbxbridge"), nats.MaxReconnects(-1))
	return err
}

func (e *Engine) connectCluster() error {
	opts := []nats.Option{
		nats.Name("pbxbridge"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		// A node that vanishes without closing the connection is noticed in about 20s, not
		// the default 4 minutes; meanwhile webhooks wait for their durable write and get 503.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			e.reportReady()
			e.log.Warn("NATS disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			e.reportReady()
			e.log.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	if e.cfg.NATS.Creds != "" {
		opts = append(opts, nats.UserCredentials(e.cfg.NATS.Creds))
	}
	if e.cfg.NATS.TLS != nil {
		opts = append(opts, nats.Secure(e.cfg.NATS.TLS))
	}
	nc, err := nats.Connect(strings.Join(e.cfg.NATS.URLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	e.nc = nc
	return nil
}

// lockDir takes an exclusive lock on the data directory so a second process fails fast
// instead of corrupting the store.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data_dir %s is not writable (%w): set data_dir to a directory pbxbridge may write", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data_dir %s is in use by another pbxbridge process (lock %s): %w", dir, f.Name(), err)
	}
	return f, nil
}

// ensureBuckets creates or updates the buckets.
func (e *Engine) ensureBuckets(ctx context.Context) error {
	calls, err := e.ensureKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      e.names.calls,
		Description: "pbxbridge open calls, for joining messages that lack a call id",
		TTL:         callTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("call bucket: %w", err)
	}
	e.calls.Store(&Calls{kv: calls})
	_, err = e.ensureKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      e.names.state,
		Description: "pbxbridge operator state: paused targets",
		Storage:     jetstream.FileStorage,
		Replicas:    e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	commands, err := e.ensureKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      e.names.commands,
		Description: "pbxbridge commands sent for the CRM: the first answer per command id",
		TTL:         CommandTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("command bucket: %w", err)
	}
	e.commands.Store(&Commands{kv: commands})
	crm, err := e.ensureKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      e.names.crm,
		Description: "pbxbridge CRM connectors' state: application tokens, the CRM's ids of calls",
		Storage:     jetstream.FileStorage,
		Replicas:    e.replicas(),
		// Per-key TTLs: a call's keys expire (crm.CallTTL), tokens stay.
		LimitMarkerTTL: crmMarkerTTL,
	})
	if err != nil {
		return fmt.Errorf("crm bucket: %w", err)
	}
	e.crm.Store(&crm)
	return nil
}

// ensureKeyValue is ensureStream for a bucket.
func (e *Engine) ensureKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if kv, err := e.js.KeyValue(ctx, cfg.Bucket); err == nil {
		if st, err := kv.Status(ctx); err == nil {
			if have, ok := st.(*jetstream.KeyValueBucketStatus); ok {
				c := have.Config()
				if c.Description == cfg.Description && c.TTL == cfg.TTL && c.Storage == cfg.Storage && c.Replicas == cfg.Replicas &&
					c.LimitMarkerTTL == cfg.LimitMarkerTTL {
					return kv, nil
				}
			}
		}
	}
	return e.js.CreateOrUpdateKeyValue(ctx, cfg)
}

// Pause stops delivery to a target until Resume; events keep queueing. The state is kept in
// JetStream so it survives restarts.
func (e *Engine) Pause(ctx context.Context, target string) error {
	return e.setPaused(ctx, target, true)
}

// Resume restarts delivery to a paused target.
func (e *Engine) Resume(ctx context.Context, target string) error {
	return e.setPaused(ctx, target, false)
}

func (e *Engine) setPaused(ctx context.Context, target string, paused bool) error {
	d := e.dispatcher(target)
	if d == nil {
		return ErrNotFound
	}
	kv, err := e.js.KeyValue(ctx, e.names.state)
	if err != nil {
		return err
	}
	if paused {
		_, err = kv.Put(ctx, pausedKey(target), []byte("1"))
	} else {
		err = kv.Delete(ctx, pausedKey(target))
	}
	if err != nil {
		return err
	}
	d.setPaused(paused)
	return nil
}

// pausedKey is a paused target's key in the state bucket.
func pausedKey(target string) string { return "paused." + target }

func (e *Engine) loadPaused(ctx context.Context, target string) bool {
	kv, err := e.js.KeyValue(ctx, e.names.state)
	if err != nil {
		return false
	}
	_, err = kv.Get(ctx, pausedKey(target))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		e.log.Warn("reading the paused state", zapTarget(target), zapErr(err))
	}
	return err == nil
}
