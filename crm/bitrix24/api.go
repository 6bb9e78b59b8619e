package bitrix24

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pbxbridge/pbxbridge/crm"
)

// maxBatch is the most commands one batch request carries (Bitrix24's limit).
const maxBatch = 50

// limitTries is how often a request the portal refused for its limit is sent again before
// the refusal reaches the caller.
const limitTries = 3

// sendTimeout bounds one request to the portal; Bitrix24 lets a request run 60 s.
const sendTimeout = 60 * time.Second

// api sends the connector's methods under the portal's request limit. The portal counts
// requests in a leaky bucket (drains rate a second, refuses above burst); api keeps the same
// bucket, so a method waits here rather than being refused there. Methods that wait together
// leave in one batch request: whichever waiter gets the next slot takes up to maxBatch of them.
//
// Deliveries fill the bucket only up to burst-reserve: the rest is for the methods of a
// caller that waits (a click-to-call), which other gateways of a cluster send without
// knowing this one's count (docs/bitrix24.md, Tokens, limits and failures).
type api struct {
	c       *connector
	rate    float64
	burst   float64
	reserve float64
	batch   int // the most methods one request carries

	mu      sync.Mutex
	level   float64 // requests the portal still counts
	last    time.Time
	pending []*request
}

type request struct {
	method string
	params url.Values
	// auth is the access token of an installation not yet stored; "" takes the stored one.
	auth       string
	taken      bool
	foreground bool
	done       chan reply
}

type reply struct {
	result json.RawMessage
	err    error
}

func newAPI(c *connector, rate float64, burst int, batch bool) *api {
	a := &api{c: c, rate: rate, burst: float64(burst), reserve: float64(burst / 5), batch: 1}
	if batch {
		a.batch = maxBatch
	}
	return a
}

// call runs method and returns its result.
func (a *api) call(ctx context.Context, method string, params url.Values) (json.RawMessage, error) {
	return a.callAuth(ctx, method, params, "")
}

func (a *api) callAuth(ctx context.Context, method string, params url.Values, auth string) (json.RawMessage, error) {
	req := &request{method: method, params: params, auth: auth, foreground: ctx.Value(foregroundKey{}) != nil,
		done: make(chan reply, 1)}
	a.mu.Lock()
	if req.foreground {
		// First in the next batch, ahead of the deliveries waiting.
		a.pending = slices.Insert(a.pending, 0, req)
	} else {
		a.pending = append(a.pending, req)
	}
	a.mu.Unlock()
	waited := false
	for {
		a.mu.Lock()
		if req.taken {
			a.mu.Unlock()
			break
		}
		wait := a.slotLocked(time.Now(), req.foreground)
		var batch []*request
		if wait == 0 {
			batch = a.takeLocked()
		}
		a.mu.Unlock()
		if batch != nil {
			// The batch may be others' only: then this request waits for the next slot.
			go a.send(context.WithoutCancel(ctx), batch)
			continue
		}
		if !waited {
			waited = true
			metrics.limitWaits.WithLabelValues(a.c.target).Inc()
		}
		timer := time.NewTimer(wait)
		select {
		case rep := <-req.done:
			timer.Stop()
			return rep.result, rep.err
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			a.mu.Lock()
			if !req.taken {
				a.removeLocked(req)
				a.mu.Unlock()
				return nil, ctx.Err()
			}
			a.mu.Unlock()
		}
	}
	select {
	case rep := <-req.done:
		return rep.result, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// acquire waits for a slot in the bucket to send batch again.
func (a *api) acquire(ctx context.Context, batch []*request) error {
	for {
		a.mu.Lock()
		wait := a.slotLocked(time.Now(), batch[0].foreground)
		a.mu.Unlock()
		if wait == 0 {
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

// slotLocked drains the bucket to now and, when a request fits, counts it and returns 0;
// otherwise it returns how long until one fits. A delivery's request fits below the reserve,
// a foreground one up to burst.
func (a *api) slotLocked(now time.Time, foreground bool) time.Duration {
	if !a.last.IsZero() {
		a.level = max(0, a.level-now.Sub(a.last).Seconds()*a.rate)
	}
	a.last = now
	limit := a.burst
	if !foreground {
		limit -= a.reserve
	}
	if a.level+1 <= limit {
		a.level++
		return 0
	}
	return time.Duration((a.level + 1 - limit) / a.rate * float64(time.Second))
}

// foregroundKey marks the context of a caller that waits for the portal's answer.
type foregroundKey struct{}

// foreground is ctx for methods sent while the portal, or a person, waits: they may use the
// bucket's reserve and go first.
func foreground(ctx context.Context) context.Context {
	return context.WithValue(ctx, foregroundKey{}, true)
}

// takeLocked takes the first pending request and up to a.batch-1 more of the same auth.
func (a *api) takeLocked() []*request {
	first := a.pending[0]
	var batch, rest []*request
	for _, r := range a.pending {
		if len(batch) < a.batch && r.auth == first.auth {
			r.taken = true
			batch = append(batch, r)
		} else {
			rest = append(rest, r)
		}
	}
	a.pending = rest
	return batch
}

func (a *api) removeLocked(req *request) {
	for i, r := range a.pending {
		if r == req {
			a.pending = append(a.pending[:i], a.pending[i+1:]...)
			return
		}
	}
}

// send sends batch as one request, refreshing the access token once if it has expired.
func (a *api) send(ctx context.Context, batch []*request) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	results, err := a.sendOnce(ctx, batch)
	refreshed := false
	for tries := 1; err != nil && tries <= limitTries; tries++ {
		var apiErr *apiError
		if !errors.As(err, &apiErr) {
			break
		}
		switch {
		case apiErr.code == "QUERY_LIMIT_EXCEEDED":
			// The portal's bucket is full (other apps share it): wait until ours drains.
			a.mu.Lock()
			a.level = a.burst
			a.mu.Unlock()
		case apiErr.code == "expired_token" && !refreshed && batch[0].auth == "" && a.c.webhook == "":
			refreshed = true
			// Unless another request or gateway has refreshed it already.
			if _, rerr := a.c.refresh(ctx, apiErr.token); rerr != nil {
				err = rerr
				continue
			}
		default:
			tries = limitTries
			continue
		}
		if werr := a.acquire(ctx, batch); werr != nil {
			break
		}
		results, err = a.sendOnce(ctx, batch)
	}
	for i, r := range batch {
		if err != nil {
			r.done <- reply{err: err}
			continue
		}
		r.done <- results[i]
	}
}

// sendOnce posts batch: one method as itself, several as a batch.
func (a *api) sendOnce(ctx context.Context, batch []*request) ([]reply, error) {
	base, token := a.c.restURL, batch[0].auth
	if a.c.webhook != "" {
		base = a.c.webhook
	} else if token == "" {
		var err error
		if token, err = a.c.accessToken(ctx); err != nil {
			return nil, err
		}
	}
	method, form := batch[0].method, url.Values{}
	if len(batch) == 1 {
		for k, vs := range batch[0].params {
			form[k] = vs
		}
	} else {
		method = "batch"
		form.Set("halt", "0")
		for i, r := range batch {
			form.Set("cmd["+batchKey(i)+"]", r.method+"?"+r.params.Encode())
		}
	}
	if token != "" {
		form.Set("auth", token)
	}
	result, err := a.post(ctx, base+method, form, method)
	if err != nil {
		var apiErr *apiError
		if errors.As(err, &apiErr) {
			apiErr.token = token
		}
		for _, r := range batch {
			if len(batch) > 1 {
				metrics.requests.WithLabelValues(a.c.target, r.method, outcomeOf(err)).Inc()
			}
		}
		return nil, err
	}
	if len(batch) == 1 {
		return []reply{{result: result}}, nil
	}
	metrics.batchSize.WithLabelValues(a.c.target).Observe(float64(len(batch)))
	var br struct {
		Result      json.RawMessage `json:"result"`
		ResultError json.RawMessage `json:"result_error"`
	}
	if err := json.Unmarshal(result, &br); err != nil {
		return nil, fmt.Errorf("bitrix24 batch: unreadable answer: %w", err)
	}
	results, errs := map[string]json.RawMessage{}, map[string]errorBody{}
	if len(br.Result) > 0 && br.Result[0] == '{' {
		_ = json.Unmarshal(br.Result, &results)
	}
	if len(br.ResultError) > 0 && br.ResultError[0] == '{' {
		_ = json.Unmarshal(br.ResultError, &errs)
	}
	replies := make([]reply, len(batch))
	for i, r := range batch {
		key := batchKey(i)
		if e, ok := errs[key]; ok {
			replies[i].err = &apiError{status: http.StatusBadRequest, code: e.Error, desc: e.Description, method: r.method}
		} else if res, ok := results[key]; ok {
			replies[i].result = res
		} else {
			replies[i].err = fmt.Errorf("bitrix24 batch: no answer for %s", r.method)
		}
		metrics.requests.WithLabelValues(a.c.target, r.method, outcomeOf(replies[i].err)).Inc()
	}
	return replies, nil
}

func batchKey(i int) string { return "c" + strconv.Itoa(i) }

// post sends one request and returns its result, or the portal's error.
func (a *api) post(ctx context.Context, endpoint string, form url.Values, method string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", a.c.env.UserAgent)
	resp, err := a.c.client().Do(req)
	if err != nil {
		metrics.requests.WithLabelValues(a.c.target, method, "connection").Inc()
		return nil, fmt.Errorf("bitrix24 %s: %s", method, scrub(err, endpoint))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		metrics.requests.WithLabelValues(a.c.target, method, "connection").Inc()
		return nil, fmt.Errorf("bitrix24 %s: reading the answer: %w", method, err)
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
		errorBody
	}
	if json.Unmarshal(body, &answer) != nil || (answer.Error == "" && resp.StatusCode != http.StatusOK) {
		metrics.requests.WithLabelValues(a.c.target, method, "http_"+strconv.Itoa(resp.StatusCode)).Inc()
		return nil, &apiError{status: resp.StatusCode, code: "HTTP_" + strconv.Itoa(resp.StatusCode), desc: excerpt(body), method: method}
	}
	if answer.Error != "" {
		e := &apiError{status: resp.StatusCode, code: answer.Error, desc: answer.Description, method: method}
		metrics.requests.WithLabelValues(a.c.target, method, outcomeOf(e)).Inc()
		return nil, e
	}
	metrics.requests.WithLabelValues(a.c.target, method, "ok").Inc()
	return answer.Result, nil
}

func (c *connector) client() *http.Client {
	if c.env.Client != nil {
		return c.env.Client
	}
	return http.DefaultClient
}

// scrub keeps the endpoint (a webhook's secret) out of an error.
func scrub(err error, endpoint string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return strings.ReplaceAll(err.Error(), endpoint, "<portal>")
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// errorBody is Bitrix24's error answer.
type errorBody struct {
	Error       string `json:"error,omitempty"`
	Description string `json:"error_description,omitempty"`
}

// apiError is a method the portal refused.
type apiError struct {
	status     int
	code, desc string
	method     string
	token      string // the access token refused, for the refresh's compare-and-set
}

func (e *apiError) Error() string {
	if e.desc == "" {
		return fmt.Sprintf("bitrix24 %s: %s", e.method, e.code)
	}
	return fmt.Sprintf("bitrix24 %s: %s: %s", e.method, e.code, e.desc)
}

func outcomeOf(err error) string {
	var e *apiError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &e):
		return e.code
	default:
		return "connection"
	}
}

// classify says what a refused method means for the target (docs/bitrix24.md, Failures).
func classify(err error) error {
	var e *apiError
	if !errors.As(err, &e) {
		return err
	}
	switch e.code {
	case "QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "OVERLOAD_LIMIT":
		return &failure{outcome: crm.Retry, reason: "limit", msg: e.Error(), retryAfter: time.Second}
	case "expired_token":
		return &failure{outcome: crm.Retry, reason: "auth", msg: e.Error()}
	case "WRONG_AUTH_TYPE":
		return down("auth", "%s: Bitrix24 takes the telephony methods only from an application; "+
			"set pbxbridge up as a local application (README, Bitrix24; docs/bitrix24.md)", e.Error())
	case "invalid_token", "NO_AUTH_FOUND", "insufficient_scope", "INVALID_CREDENTIALS", "ACCESS_DENIED",
		"user_access_error", "PORTAL_DELETED", "PAYMENT_REQUIRED", "ERROR_METHOD_NOT_FOUND":
		return down("auth", "%s (reinstall or fix the application's permissions: docs/bitrix24.md)", e.Error())
	}
	if e.status >= 500 || e.status == 0 {
		return &failure{outcome: crm.Retry, reason: "http_5xx", msg: e.Error()}
	}
	return &failure{outcome: crm.Dead, reason: "refused", msg: e.Error()}
}
