// Package gatewaytest runs the built pbxbridge binary for end-to-end tests: a real process on
// 127.0.0.1 ports, with its own data and config directories, that tests can reload, stop and
// kill -9. It also offers a CRM stand-in that records deliveries.
package gatewaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/pbxbridge once per test process (with -race when the tests run with it)
// and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pbxbridge-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pbxbridge")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/pbxbridge")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Ports FreePort hands out lie below the kernel's ephemeral range (Linux: 32768 and up), so
// that no connection's local port and no other process's listen on port 0 takes one between
// FreePort and the gateway's bind: that happened while several test packages ran at once
// (a gateway restarted after a kill found its admin port taken).
const (
	portsFrom = 20000
	portsTo   = 32000
)

// handedOut are the ports FreePort gave this process: a port is free again once its probe
// closes, so without this one gateway could get the same port twice (Caddy binds with
// SO_REUSEPORT, so both of its servers would then listen on it).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this process
// has not been given before.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		port := portsFrom + rand.IntN(portsTo-portsFrom)
		if handedOut.ports[port] {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatalf("no free port in %d-%d on 127.0.0.1", portsFrom, portsTo)
	return 0
}

// Gateway is a running pbxbridge process.
type Gateway struct {
	t         testing.TB
	Dir       string // per-gateway home: data, config, logs
	AdminAddr string // 127.0.0.1:port
	HTTPPort  int
	URL       string // http://127.0.0.1:HTTPPort
	Metrics   string // http://127.0.0.1:port/metrics
	Env       []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile *os.File
	config  string
}

// Placeholders a test's Caddyfile may use; Start fills them in:
//
//	{ADMIN}   the admin address (use as `admin {ADMIN}` in the global options)
//	{HTTP}    the site address http://127.0.0.1:<port>
//	{METRICS} the metrics site address
//	{DATA}    a data directory for `data_dir`
const (
	PAdmin   = "{ADMIN}"
	PHTTP    = "{HTTP}"
	PMetrics = "{METRICS}"
	PData    = "{DATA}"
)

// Start writes caddyfile (with placeholders filled in) and runs the gateway until the test
// ends. It returns once the admin endpoint answers.
func Start(t testing.TB, caddyfile string, env ...string) *Gateway {
	t.Helper()
	g := &Gateway{t: t, Dir: t.TempDir(), Env: env}
	g.AdminAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	g.HTTPPort = FreePort(t)
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.HTTPPort)
	metricsPort := FreePort(t)
	g.Metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	g.config = g.fill(caddyfile, metricsPort)
	var err error
	if g.logFile, err = os.Create(filepath.Join(g.Dir, "gateway.log")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Stop()
		g.logFile.Close()
		if t.Failed() {
			t.Logf("gateway log (last 60 lines):\n%s", tail(g.Logs(), 60))
		}
	})
	g.Restart()
	return g
}

func (g *Gateway) fill(caddyfile string, metricsPort int) string {
	return strings.NewReplacer(
		PAdmin, g.AdminAddr,
		PHTTP, g.URL,
		PMetrics, fmt.Sprintf("http://127.0.0.1:%d", metricsPort),
		PData, filepath.Join(g.Dir, "store"),
	).Replace(caddyfile)
}

// ConfigPath is where the current Caddyfile is.
func (g *Gateway) ConfigPath() string { return filepath.Join(g.Dir, "Caddyfile") }

// Restart starts the process again (after Kill or Stop) with the same config and data.
func (g *Gateway) Restart() {
	g.t.Helper()
	if err := os.WriteFile(g.ConfigPath(), []byte(g.config), 0o600); err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(Binary(g.t), "run", "--config", g.ConfigPath(), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"HOME="+g.Dir,
		"XDG_DATA_HOME="+filepath.Join(g.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(g.Dir, "xdg-config"),
	)
	cmd.Env = append(cmd.Env, g.Env...)
	cmd.Stdout = g.logFile
	cmd.Stderr = g.logFile
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	g.mu.Lock()
	g.cmd, g.exited = cmd, exited
	g.mu.Unlock()
	g.waitAdmin(exited)
}

// waitAdmin polls the admin endpoint: a starting process gives no other signal.
func (g *Gateway) waitAdmin(exited chan struct{}) {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			g.t.Fatalf("gateway exited at start:\n%s", tail(g.Logs(), 40))
		default:
		}
		resp, err := http.Get("http://" + g.AdminAddr + "/config/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("gateway admin endpoint did not answer within 60s:\n%s", tail(g.Logs(), 40))
}

// Kill sends SIGKILL and waits for the process to be gone.
func (g *Gateway) Kill() { g.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful stop) and waits for the process to exit.
func (g *Gateway) Stop() { g.signal(syscall.SIGTERM) }

func (g *Gateway) signal(sig syscall.Signal) {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Reload replaces the running config with caddyfile through the admin endpoint.
func (g *Gateway) Reload(caddyfile string) error {
	g.config = g.fill(caddyfile, mustPort(g.Metrics))
	if err := os.WriteFile(g.ConfigPath(), []byte(g.config), 0o600); err != nil {
		return err
	}
	out, err := exec.Command(Binary(g.t), "reload", "--config", g.ConfigPath(), "--adapter", "caddyfile",
		"--address", g.AdminAddr, "--force").CombinedOutput()
	if err != nil {
		return fmt.Errorf("reload: %v: %s", err, out)
	}
	return nil
}

func mustPort(url string) int {
	var port int
	_, _ = fmt.Sscanf(url, "http://127.0.0.1:%d/", &port)
	return port
}

// Logs returns what the process has logged so far.
func (g *Gateway) Logs() string {
	b, _ := os.ReadFile(g.logFile.Name())
	return string(b)
}

// Admin calls the admin API and returns the status and body.
func (g *Gateway) Admin(method, path string) (int, []byte) {
	g.t.Helper()
	resp, body := Request(g.t, method, "http://"+g.AdminAddr+path, "", "")
	return resp.StatusCode, body
}

// AdminJSON calls the admin API, fails the test unless it answers want, and decodes the answer
// into out (when not nil).
func (g *Gateway) AdminJSON(method, path string, want int, out any) {
	g.t.Helper()
	code, body := g.Admin(method, path)
	if code != want {
		g.t.Fatalf("%s %s: got %d %s, want %d", method, path, code, body, want)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			g.t.Fatalf("%s %s: %v in %s", method, path, err, body)
		}
	}
}

// Post sends a webhook and returns the status and body; a connection that fails (the gateway
// restarting) is status 0 with the error as body.
func (g *Gateway) Post(path, contentType, body string, header ...string) (int, string) {
	g.t.Helper()
	resp, b, err := send(http.MethodPost, g.URL+path, contentType, body, header...)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// Request sends method to target with body (Content-Type when given) and header name/value
// pairs, and returns the answer with its body read. A request that cannot be sent fails t.
func Request(t testing.TB, method, target, contentType, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := send(method, target, contentType, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func send(method, target, contentType, body string, header ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// WaitReady polls until a webhook would be accepted: the queue starts after the listener.
func (g *Gateway) WaitReady() {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		code, body := g.Admin(http.MethodGet, "/pbx/status")
		if code == http.StatusOK && bytes.Contains(body, []byte(`"ready":true`)) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("queue not ready within 60s:\n%s", tail(g.Logs(), 40))
}

// MetricsText scrapes the metrics endpoint.
func (g *Gateway) MetricsText() string {
	g.t.Helper()
	resp, err := http.Get(g.Metrics)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Eventually polls cond every 20 ms until it holds or timeout passes; for state that offers
// no signal to wait on (another process's store, metrics).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
