// Package gatewaytest runs the built pbxbridge binary for end-to-end tests, on the process
// harness of internal/gatewayproc: a real process on 127.0.0.1 ports, with its own data and
// config directories, that tests can reload, stop and kill -9, and that fails the test instead
// of returning errors. It also offers a CRM stand-in that records deliveries.
package gatewaytest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewayproc"
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
		binPath, buildErr = gatewayproc.Build(dir, raceEnabled)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and that this test
// process has not been given before (gatewayproc.FreePort).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := gatewayproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Gateway is a running pbxbridge process (gatewayproc.Gateway) that fails its test instead of
// returning errors.
type Gateway struct {
	*gatewayproc.Gateway
	t testing.TB
}

// Placeholders a test's Caddyfile may use (gatewayproc's); Start fills them in.
const (
	PAdmin   = gatewayproc.PAdmin
	PHTTP    = gatewayproc.PHTTP
	PMetrics = gatewayproc.PMetrics
	PData    = gatewayproc.PData
)

// Start writes caddyfile (with placeholders filled in) and runs the gateway until the test
// ends. It returns once the admin endpoint answers.
func Start(t testing.TB, caddyfile string, env ...string) *Gateway {
	t.Helper()
	gw, err := gatewayproc.NewGateway(Binary(t), t.TempDir(), caddyfile, env...)
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Gateway: gw, t: t}
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("gateway log (last 60 lines):\n%s", g.LogTail(60))
		}
	})
	g.Restart()
	return g
}

// Restart starts the process again (after Kill or Stop) with the same config and data.
func (g *Gateway) Restart() {
	g.t.Helper()
	if err := g.Start(); err != nil {
		g.t.Fatalf("gateway: %v", err)
	}
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
	if err := g.Gateway.WaitReady(); err != nil {
		g.t.Fatalf("gateway: %v", err)
	}
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
