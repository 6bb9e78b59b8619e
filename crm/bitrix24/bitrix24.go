// Package bitrix24 is the Bitrix24 target kind: pbxbridge as a local server-side application of
// a portal. It takes the application's installation and events (a crm.Receiver), keeps the
// OAuth pair fresh in the target's state, and reports each call through the portal's external
// telephony (register, show, finish, attachRecord), under the portal's request limit, batching
// the methods of calls that wait. docs/bitrix24.md says what it relies on.
package bitrix24

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/event"
)

// Kind is the Bitrix24 target kind.
var Kind = crm.Kind{
	Name:      "bitrix24",
	NewConfig: func() crm.Config { return new(Config) },
	Metrics:   metrics.collectors(),
}

// DefaultOAuthURL is Bitrix24's OAuth server, which refreshes every cloud portal's tokens.
const DefaultOAuthURL = "https://oauth.bitrix.info"

// Config is a Bitrix24 target's options; the target's URL is the portal's
// (https://example.bitrix24.ru).
type Config struct {
	// ClientID and ClientSecret are the local application's "Application ID" and
	// "Application key" ({env.*}/{file.*} accepted).
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// Webhook is an inbound-webhook URL used instead of an application, for portals that
	// still let one call the telephony methods.
	Webhook string `json:"webhook,omitempty"`
	// MemberID, when set, is the only portal installation accepted.
	MemberID string `json:"member_id,omitempty"`
	// OAuthURL is the OAuth server (default DefaultOAuthURL).
	OAuthURL string `json:"oauth_url,omitempty"`
	// HandlerURL is the events' handler given to event.bind; default the URL the
	// installation came to.
	HandlerURL string `json:"handler_url,omitempty"`
	// Lines are the PBX numbers registered as the application's external lines, each with
	// the account that originates the calls made from it.
	Lines map[string]string `json:"lines,omitempty"`
	// Account originates calls from a line not in Lines (default: the only account that
	// forwards to the target).
	Account string `json:"account,omitempty"`
	// Users maps PBX extensions to Bitrix24 user IDs; other extensions are looked up by the
	// users' inner phone numbers, and calls without a known user go to DefaultUser.
	Users       map[string]string `json:"users,omitempty"`
	DefaultUser string            `json:"default_user,omitempty"`
	// ShowCard pops the call's card up for the employee (default on).
	ShowCard *bool `json:"show_card,omitempty"`
	// CreateLead has Bitrix24 create a CRM entity for a number it does not know.
	CreateLead bool `json:"create_lead,omitempty"`
	// Rate and Burst are the portal's request limit (requests per second drained, and the
	// most at once): 2 and 50, or 5 and 250 on Enterprise plans.
	Rate  int `json:"rate,omitempty"`
	Burst int `json:"burst,omitempty"`
	// Batch sends the methods of calls that wait for the limit together (default on).
	Batch *bool `json:"batch,omitempty"`
}

// Provision checks the options and builds the connector for the portal at portalURL.
func (c *Config) Provision(target, portalURL string, env crm.Env) (crm.Connector, error) {
	portal, err := url.Parse(portalURL)
	if err != nil || (portal.Scheme != "https" && portal.Scheme != "http") || portal.Host == "" {
		return nil, fmt.Errorf("bitrix24: the target's URL is the portal's, such as https://example.bitrix24.ru")
	}
	conn := &connector{
		target:   target,
		domain:   portal.Host,
		restURL:  strings.TrimSuffix(portal.String(), "/") + "/rest/",
		memberID: c.MemberID,
		oauthURL: strings.TrimSuffix(c.OAuthURL, "/"),
		handler:  c.HandlerURL,
		lines:    c.Lines,
		account:  c.Account,
		users:    c.Users,
		defUser:  c.DefaultUser,
		showCard: c.ShowCard == nil || *c.ShowCard,
		create:   c.CreateLead,
		env:      env,
		log:      env.Logger,
		userIDs:  map[string]cachedUser{},
	}
	if conn.log == nil {
		conn.log = zap.NewNop()
	}
	if conn.oauthURL == "" {
		conn.oauthURL = DefaultOAuthURL
	}
	if conn.defUser == "" {
		conn.defUser = "1"
	}
	expand := env.Expand
	if expand == nil {
		expand = func(s string) string { return s }
	}
	switch {
	case c.Webhook != "" && (c.ClientID != "" || c.ClientSecret != ""):
		return nil, fmt.Errorf("bitrix24: webhook or client_id/client_secret, not both")
	case c.Webhook != "":
		conn.webhook = strings.TrimSuffix(expand(c.Webhook), "/") + "/"
		if u, err := url.Parse(conn.webhook); err != nil || u.Host == "" {
			return nil, fmt.Errorf("bitrix24: webhook is the inbound webhook's URL, https://<portal>/rest/<user>/<secret>/")
		}
	case c.ClientID == "" || c.ClientSecret == "":
		return nil, fmt.Errorf("bitrix24: client_id and client_secret are the local application's Application ID and key (docs/bitrix24.md)")
	default:
		conn.clientID, conn.clientSecret = expand(c.ClientID), expand(c.ClientSecret)
	}
	if conn.account == "" && len(env.Accounts) == 1 {
		for name := range env.Accounts {
			conn.account = name
		}
	}
	for line, acc := range c.Lines {
		if _, ok := env.Accounts[acc]; !ok && env.Accounts != nil {
			return nil, fmt.Errorf("bitrix24: line %s: account %s does not forward to this target", line, acc)
		}
	}
	rate, burst := c.Rate, c.Burst
	if rate <= 0 {
		rate = 2
	}
	if burst <= 0 {
		burst = 50
	}
	conn.api = newAPI(conn, float64(rate), burst, c.Batch == nil || *c.Batch)
	// The series exist from the start, so that increase() and alerts see the first.
	for _, step := range []string{"registered", "finished", "recorded"} {
		metrics.calls.WithLabelValues(target, step)
	}
	for _, outcome := range []string{"ok", "failed"} {
		metrics.refreshes.WithLabelValues(target, outcome)
	}
	metrics.limitWaits.WithLabelValues(target)
	return conn, nil
}

// connector is one Bitrix24 target.
type connector struct {
	target       string
	domain       string
	restURL      string
	memberID     string
	oauthURL     string
	handler      string
	clientID     string
	clientSecret string
	webhook      string
	lines        map[string]string
	account      string
	users        map[string]string
	defUser      string
	showCard     bool
	create       bool
	env          crm.Env
	log          *zap.Logger
	api          *api

	// tokens serialises this gateway's refreshes; the cluster's are serialised in State.
	tokens sync.Mutex

	mu      sync.Mutex
	userIDs map[string]cachedUser
}

type cachedUser struct {
	id      string
	expires time.Time
}

// state is the target's durable state.
func (c *connector) state(ctx context.Context) (crm.State, error) {
	if c.env.State == nil {
		return nil, errors.New("no state")
	}
	return c.env.State(ctx)
}

// Deliver reports one event of a call to the portal.
func (c *connector) Deliver(ctx context.Context, ev *event.Event) crm.Result {
	err := c.deliver(ctx, ev)
	if err == nil {
		return crm.Result{Outcome: crm.Delivered}
	}
	return result(err)
}

// result classifies a failure (docs/bitrix24.md, Failures).
func result(err error) crm.Result {
	var f *failure
	if errors.As(err, &f) {
		return crm.Result{Outcome: f.outcome, Reason: f.reason, Error: f.Error(), RetryAfter: f.retryAfter}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return crm.Result{Outcome: crm.Retry, Reason: "timeout", Error: err.Error()}
	}
	return crm.Result{Outcome: crm.Retry, Reason: "connection", Error: err.Error()}
}

// failure is an error with its outcome for the dispatcher.
type failure struct {
	outcome    crm.Outcome
	reason     string
	msg        string
	retryAfter time.Duration
}

func (f *failure) Error() string { return f.msg }

func down(reason, format string, args ...any) *failure {
	return &failure{outcome: crm.Down, reason: reason, msg: fmt.Sprintf(format, args...)}
}

var (
	_ crm.Connector = (*connector)(nil)
	_ crm.Receiver  = (*connector)(nil)
)
