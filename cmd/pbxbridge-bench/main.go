// Command pbxbridge-bench measures pbxbridge against plain Caddy, on the same binary, in one
// run. It starts the binary with generated Caddyfiles and drives it over 127.0.0.1 with unique
// webhooks (signed Mango calls and XVB calls), every phase a fresh process:
//
//  1. Caddy `respond`: the ceiling for any handler;
//  2. Caddy `reverse_proxy` to the CRM sink: what a user gets with no gateway;
//  3. pbxbridge: durable ingest and delivery to the same sink;
//
// each at a fixed concurrency for a fixed time, then the three again at a fixed rate for
// latency, and optionally (--backlog N) N events queued for a CRM that is down and drained when
// it returns. With --peers it also builds a general stream processor (Benthos, in its own
// module under peers/) and has it do the same Mango job beside pbxbridge on Mango calls alone.
// Every phase reports the measured process's CPU seconds per 1,000 events (/proc/<pid>/stat)
// and its allocations per event (the Go runtime's counter on its metrics endpoint): on a
// machine the load generator shares, those are steadier than rates. It prints a Markdown table
// of pbxbridge against those baselines, with the command that reproduces it, or JSON with
// --json. Progress goes to stderr.
//
//	go run ./cmd/pbxbridge-bench [--concurrency 32] [--duration 10s] [--rate 1000] [--backlog 1000000] [--peers]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewayproc"
)

type options struct {
	binary         string
	concurrency    int
	duration       time.Duration
	rate           int
	rateDuration   time.Duration
	backlog        int
	drainTimeout   time.Duration
	backlogTimeout time.Duration
	profileDir     string
	peers          bool
	json           bool
}

func main() {
	var opt options
	flag.StringVar(&opt.binary, "binary", "", "pbxbridge binary to measure (default: go build ./cmd/pbxbridge)")
	flag.IntVar(&opt.concurrency, "concurrency", 32, "connections of the saturating phases and the backlog")
	flag.DurationVar(&opt.duration, "duration", 10*time.Second, "length of each saturating phase")
	flag.IntVar(&opt.rate, "rate", 1000, "events/s of the fixed-rate phases (0 skips them)")
	flag.DurationVar(&opt.rateDuration, "rate-duration", 10*time.Second, "length of each fixed-rate phase")
	flag.IntVar(&opt.backlog, "backlog", 0, "events to queue for a CRM that is down, then drain (0 skips)")
	flag.DurationVar(&opt.drainTimeout, "drain-timeout", 2*time.Minute, "longest wait for a phase's deliveries")
	flag.DurationVar(&opt.backlogTimeout, "backlog-timeout", 30*time.Minute, "longest backlog ingest, and longest drain")
	flag.StringVar(&opt.profileDir, "profile", "", "save pbxbridge's CPU, allocation and heap profiles (pprof) into this directory")
	flag.BoolVar(&opt.peers, "peers", false, "also build the peer (Benthos, module "+peerDir+") and run the Mango job on it and on pbxbridge")
	flag.BoolVar(&opt.json, "json", false, "print JSON instead of Markdown")
	flag.Parse()
	if opt.concurrency < 1 || opt.duration <= 0 || opt.rate < 0 || opt.backlog < 0 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opt); err != nil {
		fmt.Fprintln(os.Stderr, "pbxbridge-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, opt options) error {
	r := &report{Command: command(), CPUs: runtime.NumCPU(), LoadBefore: loadavg(),
		concurrency: opt.concurrency, rate: opt.rate, backlogN: opt.backlog}
	work, err := os.MkdirTemp("", "pbxbridge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if opt.profileDir != "" {
		if err := os.MkdirAll(opt.profileDir, 0o755); err != nil {
			return err
		}
	}
	b := &bench{opt: opt, work: work, base: time.Now(), bin: opt.binary}
	if b.bin == "" {
		progress("building ./cmd/pbxbridge")
		if b.bin, err = gatewayproc.Build(work, false); err != nil {
			return err
		}
	}
	if opt.peers {
		progress("building the peer (%s)", peerDir)
		if b.peer, err = buildPeer(work); err != nil {
			return err
		}
	}
	if b.sink, err = startSink(b.base); err != nil {
		return err
	}
	defer b.sink.close()

	saturate := func(l *loader) []sample {
		return l.concurrent(ctx, opt.concurrency, time.Now().Add(opt.duration), 0)
	}
	desc := fmt.Sprintf("%d connections, %s", opt.concurrency, opt.duration)
	for _, k := range []gatewayKind{kindRespond, kindProxy, kindPBXBridge} {
		p, err := b.phase(ctx, k, bothCalls, desc, opt.concurrency, opt.duration, saturate, profileName(k, "cpu-saturated.pprof"))
		if err != nil {
			return err
		}
		r.Saturated = append(r.Saturated, p)
	}
	// Each PBX on its own: the ingest target holds for each.
	for _, one := range []struct {
		calls   calls
		profile string
	}{{mangoCalls, "cpu-mango.pprof"}, {xvbCalls, "cpu-xvb.pprof"}} {
		p, err := b.phase(ctx, kindPBXBridge, one.calls, string(one.calls)+", "+desc, opt.concurrency, opt.duration, saturate, one.profile)
		if err != nil {
			return err
		}
		r.PerPBX = append(r.PerPBX, p)
	}
	if opt.rate > 0 {
		fixed := func(l *loader) []sample { return l.fixedRate(ctx, opt.rate, opt.rateDuration) }
		desc := fmt.Sprintf("%d/s, %s", opt.rate, opt.rateDuration)
		for _, k := range []gatewayKind{kindRespond, kindProxy, kindPBXBridge} {
			// Connections enough for the rate at 100 ms latency.
			p, err := b.phase(ctx, k, bothCalls, desc, max(16, opt.rate/10), opt.rateDuration, fixed, profileName(k, "cpu-rate.pprof"))
			if err != nil {
				return err
			}
			r.FixedRate = append(r.FixedRate, p)
		}
	}
	if opt.peers {
		r.Peers = append(r.Peers, r.PerPBX[0]) // pbxbridge on Mango calls only
		for _, k := range []gatewayKind{kindPeerNone, kindPeerMemory} {
			p, err := b.phase(ctx, k, mangoCalls, string(mangoCalls)+", "+desc, opt.concurrency, opt.duration, saturate, "")
			if err != nil {
				return err
			}
			r.Peers = append(r.Peers, p)
		}
	}
	if opt.backlog > 0 {
		if r.Backlog, err = b.backlog(ctx); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	r.LoadAfter = loadavg()
	r.buildRows()
	if opt.json {
		return r.json(os.Stdout)
	}
	r.markdown(os.Stdout)
	return nil
}

// profileName profiles pbxbridge only.
func profileName(k gatewayKind, name string) string {
	if k != kindPBXBridge {
		return ""
	}
	return name
}

// command is the command line that reproduces the run.
func command() string {
	args := []string{"go run ./cmd/pbxbridge-bench"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
