package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/event"
)

type class int

const (
	classSuccess class = iota
	classRetry
	classDead
)

// outcome of one attempt.
type outcome struct {
	class       class
	status      int
	reason      string // metric reason: timeout|connection|http_4xx|http_5xx|mapping
	err         string // last_error of a dead letter: status and body excerpt, or the error
	retryAfter  time.Duration
	unreachable bool // connection error or timeout: opens the circuit at once
	// down: the CRM refuses the target as a whole (crm.Down); the circuit opens at once and
	// err is the reason /pbx/status gives.
	down bool
}

// bodyExcerpt bounds how much of a CRM's error answer is kept in a dead letter.
const bodyExcerpt = 512

// deliver settles one event of lane l: delivered, or dead-lettered. It returns false, leaving
// the event un-acked for redelivery, only when the dispatcher stops or l is released.
func (d *dispatcher) deliver(msg jetstream.Msg, l *lane) bool {
	accepted := time.Now()
	meta, err := msg.Metadata()
	if err == nil {
		accepted = meta.Timestamp
	}
	ev, err := readStored(msg)
	if err != nil {
		return d.deadLetter(msg, l, ev, 0, outcome{class: classDead, reason: "mapping", err: err.Error()})
	}
	for attempt := 1; ; attempt++ {
		t, probe, ok := d.acquire(l)
		if !ok {
			return false
		}
		start := time.Now()
		out := d.attempt(t, ev, start)
		elapsed := time.Since(start)
		open := d.release(l.key, out, probe)
		d.logAttempt(ev, meta, attempt, out, elapsed)
		d.recordAttempt(ev, attempt, out, start, elapsed)
		d.traceAttempt(ev, attempt, out, start, elapsed)
		d.series.duration.Observe(elapsed.Seconds())

		switch out.class {
		case classSuccess:
			d.series.success.Inc()
			d.series.lag.Observe(time.Since(accepted).Seconds())
			return d.ack(msg, l)
		case classDead:
			d.series.failure.Inc()
			metrics.failures.WithLabelValues(d.name, out.reason).Inc()
			return d.deadLetter(msg, l, ev, attempt, out)
		}
		d.series.retry.Inc()
		metrics.failures.WithLabelValues(d.name, out.reason).Inc()
		// max_age is for events a reachable target keeps refusing; nothing is dead-lettered
		// for an outage (the circuit is open), however long.
		if !open && time.Since(accepted) > t.MaxAge {
			out.err = fmt.Sprintf("max_age %s exceeded; last: %s", t.MaxAge, out.err)
			return d.deadLetter(msg, l, ev, attempt, out)
		}
		d.series.retries.Inc()
		if !d.sleep(backoff(t, attempt, out.retryAfter)) {
			return false
		}
	}
}

// backoff is exponential with full jitter, at least the CRM's Retry-After, at most the cap.
func backoff(t Target, attempt int, retryAfter time.Duration) time.Duration {
	ceil := t.BackoffMax
	if attempt < 40 {
		ceil = min(t.BackoffMin<<(attempt-1), t.BackoffMax)
	}
	delay := time.Duration(rand.Int64N(int64(ceil) + 1))
	return min(max(delay, retryAfter), t.BackoffMax)
}

func (d *dispatcher) attempt(t Target, ev *storedEvent, now time.Time) outcome {
	if t.Connector != nil {
		decoded, err := ev.event()
		if err != nil {
			return outcome{class: classDead, reason: "mapping", err: err.Error()}
		}
		return d.attemptConnector(t, decoded)
	}
	body, header, err := ev.encode(t.Format)
	if err != nil {
		return outcome{class: classDead, reason: "mapping", err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(d.attempts, t.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{class: classDead, reason: "mapping", err: err.Error()}
	}
	for k, vs := range t.Header {
		req.Header[k] = vs
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	// Canonical names, which Go sends for webhook-id and the others anyway: Set then need not
	// allocate the canonical form.
	req.Header.Set("Webhook-Id", ev.id)
	req.Header.Set("Webhook-Timestamp", strconv.FormatInt(now.Unix(), 10))
	if t.Signer != nil {
		req.Header.Set("Webhook-Signature", t.Signer.Sign(ev.id, now, body))
	}
	req.Header.Set("User-Agent", t.UserAgent)

	resp, err := d.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return outcome{class: classRetry, reason: "timeout", err: "timeout after " + t.Timeout.String(), unreachable: true}
		}
		return outcome{class: classRetry, reason: "connection", err: scrubURL(err, t.URL), unreachable: true}
	}
	defer resp.Body.Close()
	out := outcome{status: resp.StatusCode}
	accepted := resp.StatusCode >= 200 && resp.StatusCode < 300
	var excerpt []byte // only a failure's is kept
	if !accepted {
		excerpt, _ = io.ReadAll(io.LimitReader(resp.Body, bodyExcerpt))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	if accepted {
		return out
	}
	out.err = strings.TrimSpace(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, excerpt))
	out.reason = "http_5xx"
	if resp.StatusCode < 500 {
		out.reason = "http_4xx"
	}
	if slices.Contains(t.DeadStatus, resp.StatusCode) {
		out.class = classDead
		return out
	}
	out.class = classRetry
	out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return out
}

// attemptConnector hands ev to the target's CRM connector.
func (d *dispatcher) attemptConnector(t Target, ev *event.Event) outcome {
	ctx, cancel := context.WithTimeout(d.attempts, t.Timeout)
	defer cancel()
	res := t.Connector.Deliver(ctx, ev)
	out := outcome{reason: res.Reason, err: res.Error, retryAfter: res.RetryAfter}
	switch res.Outcome {
	case crm.Delivered:
		out.class = classSuccess
	case crm.Dead:
		out.class = classDead
	case crm.Down:
		out.class, out.unreachable, out.down = classRetry, true, true
	default:
		out.class = classRetry
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			out.reason, out.unreachable = "timeout", true
		}
	}
	return out
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// scrubURL keeps the target URL (which may carry a token in its query) out of errors that
// end up in logs and dead letters.
func scrubURL(err error, url string) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap()
	}
	return strings.ReplaceAll(err.Error(), url, "<target url>")
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// logAttempt logs one attempt; meta (nil when unreadable) adds where the event stands in the
// stream and how often JetStream handed it out, which tells a redelivery from a re-send when a
// call's order is in question.
func (d *dispatcher) logAttempt(ev *storedEvent, meta *jetstream.MsgMetadata, attempt int, out outcome, elapsed time.Duration) {
	result := resultOf(out)
	// One allocation of the fields' final size: a log line per attempt is a good part of
	// what a drain allocates, and so of its collections (docs/performance.md#collections).
	fields := make([]zap.Field, 0, 10)
	fields = append(fields,
		zap.String("event_id", ev.id),
		zap.String("call_id", ev.callID),
		zap.String("type", ev.typ),
		zap.Int("status", out.status),
		zap.Duration("duration", elapsed),
		zap.Int("attempt", attempt),
		zap.String("result", result),
	)
	if meta != nil {
		fields = append(fields, zap.Uint64("stream_seq", meta.Sequence.Stream), zap.Uint64("handed_out", meta.NumDelivered))
	}
	if out.class == classSuccess {
		d.log.Info("delivery attempt", fields...)
		return
	}
	d.log.Warn("delivery attempt", append(fields, zap.String("error", out.err))...)
}
