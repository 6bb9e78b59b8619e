package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The three gateways of a run, all the same binary. Only the webhook routes differ; the
// metrics site is in each so that Caddy does the same work around them.
const (
	// respondConfig answers every webhook at once: the ceiling for any handler.
	respondConfig = `{
	admin {ADMIN}
}
{HTTP} {
	bind 127.0.0.1
	respond ` + "`" + `{"status":"accepted"}` + "`" + ` 200
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`
	// proxyConfig passes every webhook to the CRM: what a user gets with no gateway.
	proxyConfig = `{
	admin {ADMIN}
}
{HTTP} {
	bind 127.0.0.1
	reverse_proxy {CRM}
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`
	// pbxbridgeConfig checks, translates, stores (every 2xx after the fsync of its group
	// commit) and delivers, signed, with the target's default concurrency. The short backoff
	// cap lets the circuit's probe find a returning CRM within a second.
	pbxbridgeConfig = `{
	admin {ADMIN}
	pbx {
		data_dir {DATA}
		max_store {MAX_STORE}
		target crm {CRM}/events {
			secret whsec_YmVuY2gtc2VjcmV0LW5vdC1hLXNlY3JldA==
			retry {
				backoff 50ms 1s
			}
		}
		mango office {
			api_key ` + mangoKey + `
			api_salt ` + mangoSalt + `
			sources 127.0.0.1
			forward crm
		}
		xvb main {
			access_code ` + xvbAccessCode + `
			sources 127.0.0.1
			forward crm
		}
	}
}
{HTTP} {
	bind 127.0.0.1
	route /hooks/mango/* {
		pbx_webhook office
	}
	route /hooks/xvb {
		pbx_webhook main
	}
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`
)

// gatewayKind is what a phase runs.
type gatewayKind string

const (
	kindRespond   gatewayKind = "respond"
	kindProxy     gatewayKind = "reverse_proxy"
	kindPBXBridge gatewayKind = "pbxbridge"
	// The peers (--peers): Benthos doing pbxbridge's Mango job, answering after the CRM took
	// the event (buffer none) or once it is in memory (buffer memory).
	kindPeerNone   gatewayKind = "Benthos, buffer none"
	kindPeerMemory gatewayKind = "Benthos, buffer memory"
)

// isPeer tells the peers from the three phases of the same binary.
func (k gatewayKind) isPeer() bool { return k == kindPeerNone || k == kindPeerMemory }

// phaseResult is what one phase measured.
type phaseResult struct {
	Gateway  gatewayKind    `json:"gateway"`
	Load     string         `json:"load"`
	Ingest   loadStats      `json:"ingest"`
	Delivery *deliveryStats `json:"delivery,omitempty"` // all but respond
	PeakRSS  int64          `json:"peak_rss_bytes"`     // VmHWM at the end of the phase
	// CPU is the process's from the load's start to the end of its deliveries.
	CPU *cpuStats `json:"cpu,omitempty"`
}

// deliveryStats compare what the gateway acknowledged with what the CRM sink received.
type deliveryStats struct {
	Events     int     `json:"events"`     // acknowledged events, each expected at the CRM
	Once       int     `json:"once"`       // of those, delivered exactly once
	Repeated   int     `json:"repeated"`   // delivered more than once (same webhook-id)
	Missing    int     `json:"missing"`    // not delivered within the drain timeout
	Unexpected int     `json:"unexpected"` // delivered but never acknowledged (a 503 whose write landed)
	PerSecond  float64 `json:"per_second"` // delivered events / (first request → last delivery)
	LagP50ms   float64 `json:"lag_p50_ms"`
	LagP99ms   float64 `json:"lag_p99_ms"`

	firstAt, lastAt time.Duration // first and last arrival at the sink, on the bench clock
}

// defaultMaxStore is far above what a timed phase stores.
const defaultMaxStore = 4 << 30

// bench is one run: a built binary, a work directory and the CRM sink every phase shares.
type bench struct {
	opt  options
	bin  string
	work string
	sink *sink
	peer string    // the peer binary, with --peers
	base time.Time // the clock of loader samples and sink arrivals
	n    int       // phases started, for directory names
}

// newGateway starts a gateway of kind in a fresh directory, with the workload of those calls
// to send it.
func (b *bench) newGateway(kind gatewayKind, maxStore int64, calls calls) (*gateway, workload, error) {
	// What the phases before left for the kernel to write back (their stores' unsynced
	// writes: history, consumer state) goes to the disk now, not under this phase's fsyncs.
	syscall.Sync()
	b.n++
	dir := filepath.Join(b.work, fmt.Sprintf("%02d-%s", b.n, kind))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, workload{}, err
	}
	var g *gateway
	var err error
	if kind.isPeer() {
		g, err = startPeer(b.peer, dir, strings.ReplaceAll(peerConfig(kind), pCRM, b.sink.URL))
	} else {
		config := map[gatewayKind]string{kindRespond: respondConfig, kindProxy: proxyConfig, kindPBXBridge: pbxbridgeConfig}[kind]
		config = strings.NewReplacer(pCRM, b.sink.URL, pMaxStore, fmt.Sprint(maxStore)).Replace(config)
		g, err = startGateway(b.bin, dir, config, kind == kindPBXBridge)
	}
	if err != nil {
		return nil, workload{}, fmt.Errorf("%s: %w", kind, err)
	}
	b.sink.reset()
	return g, workload{run: runID(), base: g.URL, calls: calls}, nil
}

func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// phase runs load (which lasts about length) against a new gateway of kind and, behind all
// but respond, checks what reached the sink. profile, when not empty, names a CPU profile of
// the load.
func (b *bench) phase(ctx context.Context, kind gatewayKind, calls calls, desc string, conns int, length time.Duration, load func(*loader) []sample, profile string) (phaseResult, error) {
	progress("%s: %s", kind, desc)
	g, wl, err := b.newGateway(kind, defaultMaxStore, calls)
	if err != nil {
		return phaseResult{}, err
	}
	defer g.Stop()
	if kind.isPeer() {
		if err := checkPeerRejectsWrongSign(ctx, wl); err != nil {
			return phaseResult{}, fmt.Errorf("%s: %w", kind, err)
		}
	}
	before, err := g.usage(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	profiled := b.startProfile(ctx, g, profile, length)
	samples := load(newLoader(wl, b.base, conns))
	<-profiled
	res := phaseResult{Gateway: kind, Load: desc, Ingest: summarise(samples)}
	if kind != kindRespond {
		d := b.checkDelivery(ctx, kind, wl, samples, b.opt.drainTimeout)
		res.Delivery = &d
	}
	after, err := g.usage(ctx)
	if err != nil {
		return phaseResult{}, err
	}
	res.CPU = after.since(before, res.Ingest.Accepted)
	mem, err := g.memory()
	if err != nil {
		return phaseResult{}, err
	}
	res.PeakRSS = mem.Peak
	return res, nil
}

// startProfile takes a CPU profile of the next length−1s (at least 1 s) into
// opt.profileDir/name (cpu-<x>.pprof), and one of the heap allocations made meanwhile into
// allocs-<x>.pprof; the channel closes when both are saved.
func (b *bench) startProfile(ctx context.Context, g *gateway, name string, length time.Duration) <-chan struct{} {
	done := make(chan struct{})
	if b.opt.profileDir == "" || name == "" {
		close(done)
		return done
	}
	query := fmt.Sprintf("seconds=%d", max(1, int(length.Seconds())-1))
	var wg sync.WaitGroup
	for kind, file := range map[string]string{"profile": name, "allocs": "allocs-" + strings.TrimPrefix(name, "cpu-")} {
		wg.Go(func() {
			if err := g.profile(ctx, kind, query, filepath.Join(b.opt.profileDir, file)); err != nil {
				progress("profile %s: %v", file, err)
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

// checkDelivery waits (up to timeout) until every acknowledged event reached the sink and
// compares the two. Behind pbxbridge an event is known by its webhook-id and its lag runs
// from the 200 to the PBX; behind reverse_proxy and the peers the request (or what the peer
// made of it) is known by its sequence number, and its lag runs from when it was sent.
func (b *bench) checkDelivery(ctx context.Context, kind gatewayKind, wl workload, samples []sample, timeout time.Duration) deliveryStats {
	type expected struct {
		key   deliveryKey
		since time.Duration
	}
	var want []expected
	first := time.Duration(1<<63 - 1)
	for _, s := range samples {
		first = min(first, s.start)
		if !ok(s.status) {
			continue
		}
		if kind != kindPBXBridge {
			want = append(want, expected{seqKey(s.n), s.start})
			continue
		}
		for _, id := range wl.eventIDs(s.n) {
			want = append(want, expected{idKey(id), s.end})
		}
	}
	keys := make([]deliveryKey, len(want))
	for i, w := range want {
		keys[i] = w.key
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	b.sink.waitAll(wctx, keys)
	cancel()

	st := deliveryStats{Events: len(want)}
	var lags []time.Duration
	st.firstAt = time.Duration(1<<63 - 1)
	for _, w := range want {
		a, found := b.sink.arrivalOf(w.key)
		switch {
		case !found:
			st.Missing++
			continue
		case a.count == 1:
			st.Once++
		default:
			st.Repeated++
		}
		lags = append(lags, a.first-w.since)
		st.firstAt, st.lastAt = min(st.firstAt, a.first), max(st.lastAt, a.first)
	}
	st.Unexpected = b.sink.distinct() - (st.Once + st.Repeated)
	if delivered := st.Once + st.Repeated; delivered > 0 {
		st.PerSecond = float64(delivered) / (st.lastAt - first).Seconds()
	}
	st.LagP50ms, st.LagP99ms = ms(percentile(lags, 0.50)), ms(percentile(lags, 0.99))
	return st
}
