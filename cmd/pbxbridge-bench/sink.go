package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// seqHeader numbers the benchmark's requests, so that the sink can tell which request a
// reverse_proxy delivered (it carries no webhook-id); pbxbridge ignores it.
const seqHeader = "X-Bench-Seq"

// sink is the CRM stand-in of every phase, on 127.0.0.1. It counts deliveries per
// webhook-id (per X-Bench-Seq behind reverse_proxy) and records when each first arrived,
// and answers 503 while down.
type sink struct {
	URL  string
	srv  *http.Server
	base time.Time // arrival times are since base, on the load generator's clock

	down     atomic.Bool
	requests atomic.Int64 // every request, 503s included

	mu       sync.Mutex
	arrivals map[deliveryKey]*arrival
	changed  chan struct{} // a delivery arrived; buffered 1
}

// deliveryKey is a webhook-id (128 bits) or a request number.
type deliveryKey [16]byte

type arrival struct {
	first time.Duration // first 2xx answered, since base
	count int32         // 2xx answered
}

func startSink(base time.Time) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{URL: "http://" + ln.Addr().String(), base: base, arrivals: map[deliveryKey]*arrival{}, changed: make(chan struct{}, 1)}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.requests.Add(1)
	if s.down.Load() {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	key, ok := keyOf(r.Header)
	if !ok {
		http.Error(w, "no webhook-id", http.StatusBadRequest)
		return
	}
	now := time.Since(s.base)
	s.mu.Lock()
	a := s.arrivals[key]
	if a == nil {
		a = &arrival{first: now}
		s.arrivals[key] = a
	}
	a.count++
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
}

func keyOf(h http.Header) (deliveryKey, bool) {
	var k deliveryKey
	if id := h.Get("webhook-id"); id != "" {
		n, err := hex.Decode(k[:], []byte(id))
		return k, err == nil && n == len(k)
	}
	n, err := strconv.ParseUint(h.Get(seqHeader), 10, 64)
	if err != nil {
		return k, false
	}
	return seqKey(int(n)), true
}

func seqKey(n int) deliveryKey {
	var k deliveryKey
	binary.BigEndian.PutUint64(k[8:], uint64(n))
	return k
}

func idKey(id string) deliveryKey {
	var k deliveryKey
	_, _ = hex.Decode(k[:], []byte(id))
	return k
}

// reset forgets what arrived, for the next phase.
func (s *sink) reset() {
	s.mu.Lock()
	s.arrivals = map[deliveryKey]*arrival{}
	s.mu.Unlock()
	s.requests.Store(0)
}

// arrivalOf returns the delivery record of key.
func (s *sink) arrivalOf(key deliveryKey) (arrival, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.arrivals[key]
	if !ok {
		return arrival{}, false
	}
	return *a, true
}

// distinct is how many different keys arrived.
func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// waitAll waits until every key of want arrived, or ctx ends; it returns how many did.
func (s *sink) waitAll(ctx context.Context, want []deliveryKey) int {
	got := 0
	for {
		s.mu.Lock()
		for got < len(want) && s.arrivals[want[got]] != nil {
			got++
		}
		s.mu.Unlock()
		if got == len(want) {
			return got
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
			return got
		}
	}
}

func (s *sink) close() { _ = s.srv.Close() }
