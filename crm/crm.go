// Package crm is what the gateway asks of a CRM connector: a target kind that delivers events
// through a CRM's own API (Bitrix24's telephony, amoCRM's calls) where a webhook cannot. Each
// CRM is one package below it that owns the target's configuration and checks, the calls it
// makes and the state it keeps; the gateway (caddymodule) keeps a registry of the kinds and
// speaks to a target only through Connector. See docs/development.md, Adding a CRM.
package crm

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// Kind is a CRM: the word after the target's name (`target <name> <kind> <url> { … }`), and a
// new, empty configuration to decode the kind's options into.
type Kind struct {
	Name      string
	NewConfig func() Config
	// Metrics are the kind's own collectors, process-wide; the gateway registers them on each
	// config's registry.
	Metrics []prometheus.Collector
}

// Config is one target's kind-specific options as the operator wrote them; its JSON field
// names are the Caddyfile's option names, beside the options every target has.
type Config interface {
	// Provision checks the configuration, with a message that says what to set where, and
	// builds the connector for the CRM at url.
	Provision(target, url string, env Env) (Connector, error)
}

// Env is what a connector gets from the gateway when it is built.
type Env struct {
	// Expand resolves {env.*} and {file.*} placeholders in a secret.
	Expand func(string) string
	// State is the target's durable state in the store, once the queue runs (ctx bounds the
	// wait). It survives restarts and is shared by every gateway of a cluster.
	State func(ctx context.Context) (State, error)
	// Client makes the connector's requests: it follows no redirect and checks addresses
	// against outbound_allow. Requests set UserAgent.
	Client    *http.Client
	UserAgent string
	// Originate carries out a command on a PBX account through the pbx_originate path (one
	// answer per command_id, the account's pace and lock-out).
	Originate func(ctx context.Context, req pbx.CommandRequest) pbx.Answer
	// Accounts are the PBX accounts that forward to the target, by name.
	Accounts map[string]event.Origin
	Logger   *zap.Logger
}

// Connector delivers a target's events. The dispatcher calls Deliver for one event of a call
// at a time, in order, and for up to the target's concurrency calls at once, within the
// target's timeout. A config reload builds a new connector; the old one, if it is an
// io.Closer, is closed when its config stops. What must outlive either is kept in State.
type Connector interface {
	Deliver(ctx context.Context, ev *event.Event) Result
}

// Outcome is what became of an event.
type Outcome int

const (
	// Delivered: the CRM has it; it is acknowledged.
	Delivered Outcome = iota
	// Retry: try this event again after a backoff (at least RetryAfter).
	Retry
	// Dead: the CRM refuses this event for good; it is dead-lettered with Error.
	Dead
	// Down: the CRM refuses the target as a whole (a revoked token, an uninstalled app). The
	// circuit opens with Error as its reason, shown in /pbx/status; nothing is dead-lettered,
	// and the circuit's probes try again until the CRM takes events.
	Down
)

// Result is one delivery's outcome.
type Result struct {
	Outcome Outcome
	// Reason is the failure's metric label (e.g. limit, auth, http_5xx, timeout, mapping).
	Reason string
	// Error says what went wrong, with the CRM's error text; it never carries a secret.
	Error      string
	RetryAfter time.Duration
}

// Employee is the extension of a call's employee, whom a CRM makes responsible for it: who
// answered, else the employee's side (the caller of an outbound call, the called of another).
func Employee(d *event.Data) string {
	if d.Agent != "" {
		return d.Agent
	}
	if d.Direction == event.DirectionOutbound {
		return d.From.Extension
	}
	return d.To.Extension
}

// Receiver is a connector that takes requests from its CRM (an application's install and its
// events): the pbx_crm handler passes them on.
type Receiver interface {
	http.Handler
}

// State is a target's durable key-value state. Keys are dot-separated tokens of letters,
// digits, - and _.
type State interface {
	// Get returns the value of key and its revision, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, uint64, error)
	// Put stores value under key if the key's revision is still revision (0: the key must not
	// exist), and returns the new revision, or ErrConflict when another writer came first.
	// With a ttl the key expires ttl after this write (CallTTL for what is kept of a call);
	// 0 keeps it until it is deleted (tokens).
	Put(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error)
	// Delete removes key.
	Delete(ctx context.Context, key string) error
}

// CallTTL is how long State keeps what a connector remembers of one call (the CRM's id of it,
// that it was added), after the last write: longer than the default max_age (72h), the time
// an event of the call can still be retried, with days to spare (docs/development.md, Adding
// a CRM).
const CallTTL = 7 * 24 * time.Hour

var (
	ErrNotFound = errors.New("crm state: key not found")
	ErrConflict = errors.New("crm state: changed by another writer")
)
