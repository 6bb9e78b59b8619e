package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

const (
	// lookupCacheMax bounds the contact cache; at the bound it is simply emptied.
	lookupCacheMax = 10000
	// lookupAnswerMax bounds what is read of the CRM's answer.
	lookupAnswerMax = 64 << 10
)

// lookup answers XVB's synchronous "who is calling?" from the CRM, within its timeout: the
// caller waits while it runs, so on any failure the PBX gets `{}` in time and routes the call
// as usual.
type lookup struct {
	url     string
	header  http.Header
	timeout time.Duration
	ttl     time.Duration
	client  *http.Client // follows no redirect: the lookup's headers go to its URL only

	mu    sync.Mutex
	cache map[string]cachedContact
}

type cachedContact struct {
	answer  []byte
	expires time.Time
}

// answer returns the PBX's answer for phone and how it was obtained (the metric outcome:
// found, not_found, cached, timeout, error).
func (l *lookup) answer(ctx context.Context, account, phone string) ([]byte, string) {
	now := time.Now()
	if l.ttl > 0 {
		l.mu.Lock()
		c, ok := l.cache[phone]
		l.mu.Unlock()
		if ok && now.Before(c.expires) {
			return c.answer, "cached"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(xvb.ContactQuery(account, phone)))
	if err != nil {
		return []byte("{}"), "error"
	}
	for k, vs := range l.header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return []byte("{}"), "timeout"
		}
		return []byte("{}"), "error"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, lookupAnswerMax))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return []byte("{}"), "timeout"
		}
		return []byte("{}"), "error"
	}
	var answer []byte
	var outcome string
	switch {
	case resp.StatusCode == http.StatusNotFound:
		answer, outcome = []byte("{}"), "not_found"
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		answer = xvb.ContactAnswer(body)
		outcome = "found"
		if string(answer) == "{}" {
			outcome = "not_found"
		}
	default:
		return []byte("{}"), "error" // not cached: the next call asks again
	}
	if l.ttl > 0 {
		l.mu.Lock()
		if l.cache == nil || len(l.cache) >= lookupCacheMax {
			l.cache = map[string]cachedContact{}
		}
		l.cache[phone] = cachedContact{answer: answer, expires: now.Add(l.ttl)}
		l.mu.Unlock()
	}
	return answer, outcome
}
