package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/crm"
)

// Target is one CRM endpoint and how events are delivered to it.
type Target struct {
	Name        string
	URL         string
	Format      Format
	Signer      *Signer // nil: unsigned
	Header      http.Header
	Timeout     time.Duration
	Concurrency int
	BackoffMin  time.Duration
	BackoffMax  time.Duration
	MaxAge      time.Duration
	// DeadStatus are the HTTP statuses that dead-letter an event at once.
	DeadStatus []int
	// Accounts are the PBX accounts that forward to this target.
	Accounts []Account
	// Events are type globs ("call.*", "recording.ready"); empty means every type.
	Events []string
	// UserAgent is sent with every attempt.
	UserAgent string
	// Connector delivers through the CRM's own API instead of a webhook to URL (nil: a
	// webhook); Format, Signer, Header and DeadStatus are then unused.
	Connector crm.Connector
}

// Account is a PBX account: its events are stored under <prefix>.<PBX>.<Account>.<type>.
type Account struct{ PBX, Account string }

// Defaults of docs/configuration.md.
var DefaultDeadStatus = []int{400, 413, 415, 422}

const (
	defaultTimeout     = 10 * time.Second
	defaultConcurrency = 16
	defaultBackoffMin  = time.Second
	defaultBackoffMax  = 10 * time.Minute
	defaultMaxAge      = 72 * time.Hour
	// maxHeld bounds the events a dispatcher holds un-acked (in flight, waiting in a lane or in
	// backoff); it is also the consumer's MaxAckPending.
	maxHeld = 1024
	// pinnedGroup is the consumer's priority group: in a cluster one instance at a time
	// receives a consumer's messages, so per-call lanes stay whole.
	pinnedGroup = "lanes"
)

func (t *Target) withDefaults() {
	if t.Timeout <= 0 {
		t.Timeout = defaultTimeout
	}
	if t.Concurrency <= 0 {
		t.Concurrency = defaultConcurrency
	}
	if t.BackoffMin <= 0 {
		t.BackoffMin = defaultBackoffMin
	}
	if t.BackoffMax <= 0 {
		t.BackoffMax = defaultBackoffMax
	}
	if t.BackoffMax < t.BackoffMin {
		t.BackoffMax = t.BackoffMin
	}
	if t.MaxAge <= 0 {
		t.MaxAge = defaultMaxAge
	}
	if t.DeadStatus == nil {
		t.DeadStatus = DefaultDeadStatus
	}
	if t.Format == nil {
		t.Format, _ = NewFormat("", "", false)
	}
}

// filterSubjects are the consumer's subject filters: every source × every event glob.
func (n names) filterSubjects(t *Target) []string {
	events := t.Events
	if len(events) == 0 || slices.Contains(events, "*") || slices.Contains(events, ">") {
		events = []string{">"}
	}
	var out []string
	for _, s := range t.Accounts {
		for _, ev := range events {
			out = append(out, n.subject(s.PBX, s.Account, ev))
		}
	}
	// Replayed dead letters come back to this target alone.
	out = append(out, n.replaySubject(t.Name, ">"))
	slices.Sort(out)
	out = slices.Compact(out)
	// JetStream refuses a filter inside another (call.completed inside call.*); it adds nothing.
	var kept []string
	for _, s := range out {
		if !slices.ContainsFunc(out, func(f string) bool { return f != s && server.SubjectMatchesFilter(s, f) }) {
			kept = append(kept, s)
		}
	}
	return kept
}

// Apply creates or updates the streams, the buckets and one consumer per target, removes the
// consumers of targets that are gone, and starts or reconfigures their dispatchers. It is
// idempotent: Caddy calls it on every start and reload. cfg's store limits (MaxStore,
// DedupeWindow) replace those the engine was opened with.
func (e *Engine) Apply(ctx context.Context, cfg Config, targets []Target) error {
	if len(targets) == 0 {
		return errors.New("no targets: events would have nowhere to go")
	}
	cfg.withDefaults(e.health.defaultMaxStore())
	e.mu.Lock()
	e.cfg.MaxStore, e.cfg.DedupeWindow = cfg.MaxStore, cfg.DedupeWindow
	e.mu.Unlock()
	e.setTracer(cfg.Tracer)
	e.checkDiskRoom()
	for i := range targets {
		targets[i].withDefaults()
	}
	if err := e.ensureStreams(ctx); err != nil {
		if !e.nc.IsConnected() {
			return fmt.Errorf("no connection to NATS: %w", err)
		}
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := map[string]bool{}
	for i := range targets {
		t := targets[i]
		keep[t.Name] = true
		cons, err := e.ensureConsumer(ctx, &t)
		if err != nil {
			return fmt.Errorf("target %s: %w", t.Name, err)
		}
		if d := e.dispatchers[t.Name]; d != nil {
			d.reconfigure(t)
			continue
		}
		e.dispatchers[t.Name] = startDispatcher(e, t, cons)
	}
	for name, d := range e.dispatchers {
		if keep[name] {
			continue
		}
		delete(e.dispatchers, name)
		go d.stop(context.Background())
		deleteSeries(name)
		if err := e.js.DeleteConsumer(ctx, e.names.events, consumerName(name)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			e.log.Warn("removing the consumer of a removed target", zapTarget(name), zapErr(err))
		}
	}
	routed := map[Account]bool{}
	for _, t := range targets {
		for _, acc := range t.Accounts {
			routed[acc] = true
		}
	}
	e.routed.Store(&routed)
	e.ready.Store(true)
	e.reportReady()
	return nil
}

func (e *Engine) replicas() int {
	if e.cfg.NATS != nil && e.cfg.NATS.Replicas > 0 {
		return e.cfg.NATS.Replicas
	}
	return 1
}

// ensureStreams creates or updates the events stream, the dead-letter stream and the buckets.
// The events stream has no MaxAge: an event leaves it only when every target has delivered or
// dead-lettered it, so a CRM outage longer than any age limit loses nothing (the dispatcher
// applies a target's max_age to events the reachable CRM keeps refusing).
func (e *Engine) ensureStreams(ctx context.Context) error {
	e.mu.Lock() // Apply sets them; the store's healing may run meanwhile
	maxStore, dedupe := e.cfg.MaxStore, e.cfg.DedupeWindow
	e.mu.Unlock()
	events, err := e.ensureStream(ctx, jetstream.StreamConfig{
		Name:        e.names.events,
		Description: "pbxbridge canonical call events",
		Subjects:    []string{e.names.prefix + ".>"},
		Retention:   jetstream.InterestPolicy,
		Storage:     jetstream.FileStorage,
		MaxBytes:    maxStore,
		Discard:     jetstream.DiscardNew,
		Duplicates:  dedupe,
		Replicas:    e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	e.startSeqOnce.Do(func() { e.startSeq = events.CachedInfo().State.LastSeq })
	_, err = e.ensureStream(ctx, jetstream.StreamConfig{
		Name:        e.names.dead,
		Description: "pbxbridge dead letters: <target>.<event id>",
		Subjects:    []string{e.names.prefix + "_dead.>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		// Full → dead-lettering fails and the event stays queued: nothing is dropped.
		MaxBytes:          maxStore / 4,
		Discard:           jetstream.DiscardNew,
		MaxMsgsPerSubject: 1,
		Replicas:          e.replicas(),
	})
	if err != nil {
		return fmt.Errorf("dead-letter stream: %w", err)
	}
	if err := e.ensureHistory(ctx, maxStore); err != nil {
		return err
	}
	return e.ensureBuckets(ctx)
}

func consumerName(target string) string { return "target-" + target }

func (e *Engine) ensureConsumer(ctx context.Context, t *Target) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:        consumerName(t.Name),
		Description:    "pbxbridge target " + t.Name,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  maxHeld,
		FilterSubjects: e.names.filterSubjects(t),
		// A new target receives what arrives from now on, not the backlog of the others.
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{pinnedGroup},
		PinnedTTL:      2 * ackWait,
		Replicas:       e.replicas(),
	}
	if existing, err := e.js.Consumer(ctx, e.names.events, cfg.Durable); err == nil {
		// The deliver policy is fixed at creation.
		cfg.DeliverPolicy = existing.CachedInfo().Config.DeliverPolicy
		cfg.OptStartSeq = existing.CachedInfo().Config.OptStartSeq
		cfg.OptStartTime = existing.CachedInfo().Config.OptStartTime
		if sameConsumer(existing.CachedInfo().Config, cfg) {
			return existing, nil
		}
	}
	return e.js.CreateOrUpdateConsumer(ctx, e.names.events, cfg)
}

// ensureStream creates or updates a stream, and leaves one that is as configured alone: an
// update rewrites the stream's metadata, which fails on a full disk, and a gateway holding
// events must start on one.
func (e *Engine) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if s, err := e.js.Stream(ctx, cfg.Name); err == nil && sameStream(s.CachedInfo().Config, cfg) {
		return s, nil
	}
	return e.js.CreateOrUpdateStream(ctx, cfg)
}

// sameStream reports whether have has every setting want gives (the server fills in others).
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.MaxBytes == want.MaxBytes &&
		have.Discard == want.Discard && (want.Duplicates == 0 || have.Duplicates == want.Duplicates) &&
		have.MaxMsgsPerSubject == cmp.Or(want.MaxMsgsPerSubject, -1) && have.Replicas == want.Replicas
}

// sameConsumer is sameStream for a consumer.
func sameConsumer(have, want jetstream.ConsumerConfig) bool {
	return have.Description == want.Description && have.AckPolicy == want.AckPolicy && have.AckWait == want.AckWait &&
		have.MaxDeliver == want.MaxDeliver && have.MaxAckPending == want.MaxAckPending &&
		slices.Equal(have.FilterSubjects, want.FilterSubjects) && have.PriorityPolicy == want.PriorityPolicy &&
		slices.Equal(have.PriorityGroups, want.PriorityGroups) && have.PinnedTTL == want.PinnedTTL &&
		max(have.Replicas, 1) == max(want.Replicas, 1)
}
