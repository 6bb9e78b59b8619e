package gatewayproc

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Build builds the pbxbridge binary into dir, with -race when race is set, and returns its
// path. It runs the go command in the current directory, which must be inside this module:
// a test's package directory, or wherever `go run ./cmd/pbxbridge-bench` runs.
func Build(dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "pbxbridge")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/pbxbridge/pbxbridge/cmd/pbxbridge")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// readyWithin bounds every wait for a gateway: the start of a race-built binary on a busy
// machine included.
const readyWithin = 60 * time.Second

// Gateway is the pbxbridge binary run on a Caddyfile, Dir/Caddyfile.
type Gateway struct {
	*Process
	bin    string
	config string // the Caddyfile, placeholders filled in
}

// NewGateway readies a gateway of binary bin in dir, on caddyfile (its placeholders filled
// in), with env besides its own environment. It starts nothing.
func NewGateway(bin, dir, caddyfile string, env ...string) (*Gateway, error) {
	p, err := NewProcess(dir, env...)
	if err != nil {
		return nil, err
	}
	return &Gateway{Process: p, bin: bin, config: p.Fill(caddyfile)}, nil
}

// ConfigPath is where the current Caddyfile is.
func (g *Gateway) ConfigPath() string { return filepath.Join(g.Dir, "Caddyfile") }

// Start writes the Caddyfile and runs the gateway (again, after Stop or Kill: the same config,
// the same data). It returns once the admin endpoint answers, which Caddy's holds off until
// the configuration has loaded; one that does not is stopped.
func (g *Gateway) Start() error {
	if err := os.WriteFile(g.ConfigPath(), []byte(g.config), 0o600); err != nil {
		return err
	}
	if err := g.Process.Start(g.bin, "run", "--config", g.ConfigPath(), "--adapter", "caddyfile"); err != nil {
		return err
	}
	err := g.Poll(readyWithin, "the admin endpoint", func() bool {
		resp, err := http.Get("http://" + g.AdminAddr + "/config/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if err != nil {
		g.Stop()
	}
	return err
}

// WaitReady polls pbxbridge's status until a webhook would be accepted: the queue starts after
// the listener.
func (g *Gateway) WaitReady() error {
	return g.Poll(readyWithin, "a ready queue", func() bool {
		resp, err := http.Get("http://" + g.AdminAddr + "/pbx/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"ready":true`))
	})
}

// Reload replaces the running config with caddyfile through the admin endpoint.
func (g *Gateway) Reload(caddyfile string) error {
	g.config = g.Fill(caddyfile)
	if err := os.WriteFile(g.ConfigPath(), []byte(g.config), 0o600); err != nil {
		return err
	}
	out, err := exec.Command(g.bin, "reload", "--config", g.ConfigPath(), "--adapter", "caddyfile",
		"--address", g.AdminAddr, "--force").CombinedOutput()
	if err != nil {
		return fmt.Errorf("reload: %v: %s", err, out)
	}
	return nil
}
