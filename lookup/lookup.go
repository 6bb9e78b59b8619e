// Package lookup answers a PBX's synchronous "who is calling?" from the CRM: it POSTs the
// caller's number to the CRM's lookup URL and reads the contact's name and responsible
// employee (docs/xvb.md, The contact lookup), or asks a Bitrix24 portal or an amoCRM account
// through their own APIs (docs/configuration.md, Contact lookup). The caller waits while it
// runs, so every failure comes back in time as "not found" and the PBX routes the call as usual.
package lookup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
)

const (
	defaultTimeout = 2 * time.Second
	// cacheMax bounds the contact cache; at the bound it is simply emptied.
	cacheMax = 10000
	// answerMax bounds what is read of the CRM's answer.
	answerMax = 64 << 10
)

// Config is where the answer comes from, as the `lookup [<source>] <url> { … }` block sets it.
type Config struct {
	// Source is empty for a URL that answers pbxbridge's query (Query, ReadContact), bitrix24
	// for a portal's inbound webhook, amocrm for an amoCRM account (docs/configuration.md,
	// Contact lookup).
	Source  string      `json:"source,omitempty"`
	URL     string      `json:"url"`
	Headers http.Header `json:"headers,omitempty"`
	// Token is amoCRM's long-lived token.
	Token string `json:"token,omitempty"`
	// Users maps an extension to its amoCRM user id, as the amocrm target's users do.
	Users   map[string]string `json:"users,omitempty"`
	Timeout pbx.Duration      `json:"timeout,omitempty"`
	Cache   pbx.Duration      `json:"cache,omitempty"`
}

// Client asks one account's CRM.
type Client struct {
	source  source
	timeout time.Duration
	ttl     time.Duration

	mu    sync.Mutex
	cache map[string]cached
}

// source asks a CRM who phone is. An empty contact and no error is "not found"; an error is a
// failure, which is not cached.
type source interface {
	ask(ctx context.Context, origin event.Origin, phone, callID string) (Contact, error)
}

type cached struct {
	contact Contact
	expires time.Time
}

// Provision checks the configuration; expand resolves placeholders in the URL, headers and
// token. No configuration is no client (nil): questions are answered "not found".
func (c *Config) Provision(expand func(string) string) (*Client, error) {
	if c == nil {
		return nil, nil
	}
	u := expand(c.URL)
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, errors.New("lookup: url must be an http:// or https:// URL")
	}
	if c.Source != "" && len(c.Headers) > 0 {
		return nil, fmt.Errorf("lookup %s: header is for a lookup URL of your own; %s's credentials are in its URL or token", c.Source, c.Source)
	}
	if c.Source != "amocrm" && (c.Token != "" || len(c.Users) > 0) {
		return nil, errors.New("lookup: token and users are amocrm's: lookup amocrm <url> { token …; users { … } }")
	}
	cl := &Client{timeout: time.Duration(c.Timeout), ttl: time.Duration(c.Cache)}
	if cl.timeout <= 0 {
		cl.timeout = defaultTimeout
	}
	client := outbound.Configured(0) // follows no redirect: credentials go to their URL only
	var err error
	switch c.Source {
	case "":
		cl.source = newURLSource(u, c.Headers, expand, client)
	case "bitrix24":
		cl.source, err = newBitrix24(u, client)
	case "amocrm":
		cl.source, err = newAmoCRM(u, expand(c.Token), c.Users, client)
	default:
		err = fmt.Errorf("lookup: no source %q (bitrix24, amocrm, or a URL: lookup <url>)", c.Source)
	}
	if err != nil {
		return nil, err
	}
	return cl, nil
}

// Contact is what the CRM knows of a number; as JSON it is the answer the PBXs of the
// CommonCRM vocabulary (XVB, ITooLabs) expect, {} meaning "not found".
type Contact struct {
	Name        string `json:"contact_name,omitempty"`
	Responsible string `json:"responsible,omitempty"`
}

// Answer is the contact as strict JSON with Cyrillic as raw UTF-8.
func (c Contact) Answer() []byte { return pbx.JSON(c) }

// Query is what the gateway POSTs to the CRM's lookup URL: the account, the number and, if the
// PBX sends it with the question (ITooLabs), the call's id. phone goes out in E.164 when it
// parses in the default region; an account of another region passes event.Number(phone,
// region), which this leaves as it is.
func Query(origin event.Origin, phone, callID string) []byte {
	return pbx.JSON(struct {
		PBX     string `json:"pbx"`
		Account string `json:"account"`
		Phone   string `json:"phone"`
		CallID  string `json:"call_id,omitempty"`
	}{origin.PBX, origin.Account, event.Number(phone, ""), strings.TrimSpace(callID)})
}

// ReadContact reads the CRM's answer, {"name":…,"responsible":…}: each field on its own
// merit, so one malformed field does not lose the other; responsible may be a number (→
// string) because PBXs want an extension string and CRMs often store extensions as numbers.
// Garbage is "not found".
func ReadContact(crmBody []byte) Contact {
	var in struct {
		Name        json.RawMessage `json:"name"`
		Responsible json.RawMessage `json:"responsible"`
	}
	var out Contact
	if json.Unmarshal(crmBody, &in) == nil {
		out.Name = pbx.Scalar(in.Name, false)
		out.Responsible = pbx.Scalar(in.Responsible, true)
	}
	return out
}

// Reply answers a PBX's "who is calling?" about phone (in call callID, if the PBX said) with
// c, or with "not found" (outcome disabled) when c is nil: no lookup is configured.
func (c *Client) Reply(ctx context.Context, origin event.Origin, phone, callID string) pbx.Reply {
	contact, outcome := Contact{}, "disabled"
	if c != nil {
		contact, outcome = c.Find(ctx, origin, event.Number(phone, origin.Region), callID)
	}
	return pbx.Reply{Answer: contact.Answer(), Lookup: outcome}
}

// Find asks the CRM who phone is (in call callID, if the PBX said), within the timeout. It
// returns the contact (empty when not found or on any failure) and how it was obtained: the
// metric outcome found, not_found, cached, timeout or error.
func (c *Client) Find(ctx context.Context, origin event.Origin, phone, callID string) (Contact, string) {
	now := time.Now()
	if c.ttl > 0 {
		c.mu.Lock()
		hit, ok := c.cache[phone]
		c.mu.Unlock()
		if ok && now.Before(hit.expires) {
			return hit.contact, "cached"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	contact, err := c.source.ask(ctx, origin, phone, callID)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Contact{}, "timeout"
		}
		return Contact{}, "error" // not cached: the next call asks again
	}
	outcome := "not_found"
	if contact != (Contact{}) {
		outcome = "found"
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if c.cache == nil || len(c.cache) >= cacheMax {
			c.cache = map[string]cached{}
		}
		c.cache[phone] = cached{contact: contact, expires: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return contact, outcome
}

// urlSource is a CRM endpoint of the user's own that answers pbxbridge's query.
type urlSource struct {
	url    string
	header http.Header
	client *http.Client
}

func newURLSource(u string, headers http.Header, expand func(string) string, client *http.Client) *urlSource {
	s := &urlSource{url: u, header: http.Header{}, client: client}
	for k, vs := range headers {
		for _, v := range vs {
			s.header.Add(k, expand(v))
		}
	}
	return s
}

func (s *urlSource) ask(ctx context.Context, origin event.Origin, phone, callID string) (Contact, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(Query(origin, phone, callID)))
	if err != nil {
		return Contact{}, err
	}
	for k, vs := range s.header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	status, body, err := send(s.client, req)
	switch {
	case err != nil:
		return Contact{}, err
	case status == http.StatusNotFound:
		return Contact{}, nil
	case status >= 200 && status < 300:
		return ReadContact(body), nil
	}
	return Contact{}, fmt.Errorf("lookup: HTTP %d", status)
}

// send makes req and reads at most answerMax of the answer.
func send(client *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, answerMax))
	return resp.StatusCode, body, err
}
