// Package lookup answers a PBX's synchronous "who is calling?" from the CRM: it POSTs the
// caller's number to the CRM's lookup URL and reads the contact's name and responsible
// employee (docs/xvb.md, The contact lookup). The caller waits while it runs, so every
// failure comes back in time as "not found" and the PBX routes the call as usual.
package lookup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// Config is the CRM endpoint that answers, as the `lookup <url> { … }` block sets it.
type Config struct {
	URL     string       `json:"url"`
	Headers http.Header  `json:"headers,omitempty"`
	Timeout pbx.Duration `json:"timeout,omitempty"`
	Cache   pbx.Duration `json:"cache,omitempty"`
}

// Client asks one account's CRM endpoint.
type Client struct {
	url     string
	header  http.Header
	timeout time.Duration
	ttl     time.Duration
	client  *http.Client // follows no redirect: the lookup's headers go to its URL only

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	contact Contact
	expires time.Time
}

// Provision checks the configuration; expand resolves placeholders in the URL and headers.
// No configuration is no client (nil): questions are answered "not found".
func (c *Config) Provision(expand func(string) string) (*Client, error) {
	if c == nil {
		return nil, nil
	}
	u := expand(c.URL)
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, errors.New("lookup: url must be an http:// or https:// URL")
	}
	cl := &Client{url: u, header: http.Header{}, timeout: time.Duration(c.Timeout), ttl: time.Duration(c.Cache), client: outbound.Configured(0)}
	if cl.timeout <= 0 {
		cl.timeout = defaultTimeout
	}
	for k, vs := range c.Headers {
		for _, v := range vs {
			cl.header.Add(k, expand(v))
		}
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

// Find asks the CRM who phone is (in call callID, if the PBX said), within the timeout. It returns the contact (empty when not
// found or on any failure) and how it was obtained: the metric outcome found, not_found,
// cached, timeout or error.
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(Query(origin, phone, callID)))
	if err != nil {
		return Contact{}, "error"
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	failed := func() (Contact, string) {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return Contact{}, "timeout"
		}
		return Contact{}, "error"
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return failed()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, answerMax))
	if err != nil {
		return failed()
	}
	var contact Contact
	outcome := "not_found"
	switch {
	case resp.StatusCode == http.StatusNotFound:
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if contact = ReadContact(body); contact != (Contact{}) {
			outcome = "found"
		}
	default:
		return Contact{}, "error" // not cached: the next call asks again
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
