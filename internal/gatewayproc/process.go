// Package gatewayproc runs a program of this repository, the pbxbridge binary above all, as a
// process of its own on 127.0.0.1 ports: the one harness of the end-to-end tests
// (internal/gatewaytest wraps it for testing.TB) and of the benchmark (cmd/pbxbridge-bench).
package gatewayproc

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Ports FreePort hands out lie below the kernel's ephemeral range (Linux: 32768 and up), so
// that no connection's local port and no other process's listen on port 0 takes one between
// FreePort and the process's bind: that happened while several test packages ran at once
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
func FreePort() (int, error) {
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
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d on 127.0.0.1", portsFrom, portsTo)
}

// Placeholders a process's configuration may use; Fill fills them in.
const (
	PAdmin   = "{ADMIN}"   // the admin address, 127.0.0.1:<port> (`admin {ADMIN}` in a Caddyfile)
	PHTTP    = "{HTTP}"    // the site, http://127.0.0.1:<port>
	PMetrics = "{METRICS}" // the metrics site, http://127.0.0.1:<port>
	PData    = "{DATA}"    // a data directory (pbx `data_dir`)
)

// Process is one program run, and its restarts, with its own home, data and config
// directories under Dir, its output appended to Dir/gateway.log, and three listeners on free
// 127.0.0.1 ports: the admin endpoint, the site and the metrics.
type Process struct {
	Dir         string
	AdminAddr   string // 127.0.0.1:port
	HTTPPort    int
	URL         string // http://127.0.0.1:HTTPPort
	MetricsAddr string // 127.0.0.1:port
	Metrics     string // http://MetricsAddr/metrics
	Env         []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// NewProcess chooses the ports of a process that lives in dir and has env besides its own
// environment. It starts nothing.
func NewProcess(dir string, env ...string) (*Process, error) {
	var ports [3]int
	for i := range ports {
		var err error
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	p := &Process{Dir: dir, Env: env, HTTPPort: ports[1]}
	p.AdminAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", p.HTTPPort)
	p.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	p.Metrics = "http://" + p.MetricsAddr + "/metrics"
	return p, nil
}

// Fill fills the placeholders into config.
func (p *Process) Fill(config string) string {
	return strings.NewReplacer(
		PAdmin, p.AdminAddr,
		PHTTP, p.URL,
		PMetrics, "http://"+p.MetricsAddr,
		PData, filepath.Join(p.Dir, "store"),
	).Replace(config)
}

// LogPath is the file the process's output goes to.
func (p *Process) LogPath() string { return filepath.Join(p.Dir, "gateway.log") }

// Start runs name with args as the process (again, after Stop or Kill) and returns once it
// has started; what it takes to be ready is the caller's Poll.
func (p *Process) Start(name string, args ...string) error {
	log, err := os.OpenFile(p.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close() // the child has its own descriptor
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(),
		"HOME="+p.Dir,
		"XDG_DATA_HOME="+filepath.Join(p.Dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(p.Dir, "xdg-config"),
	)
	cmd.Env = append(cmd.Env, p.Env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited
}

// Pid is the process's id, for what /proc says of it.
func (p *Process) Pid() int {
	cmd, _ := p.current()
	return cmd.Process.Pid
}

// Poll calls cond every 50 ms until it holds, for a starting process gives no other signal. It
// fails when the process exits first or timeout passes, with the end of the log.
func (p *Process) Poll(timeout time.Duration, what string, cond func() bool) error {
	_, exited := p.current()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("the process exited while waiting for %s:\n%s", what, p.LogTail(40))
		default:
		}
		if cond() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no %s within %s:\n%s", what, timeout, p.LogTail(40))
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

// Stop sends SIGTERM (a graceful stop) and waits for the process to exit, or kills it after
// 60 s.
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

func (p *Process) signal(sig syscall.Signal) {
	cmd, exited := p.current()
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

// Logs returns what the process has logged so far, over all its starts.
func (p *Process) Logs() string {
	b, _ := os.ReadFile(p.LogPath())
	return string(b)
}

// LogTail is the last n lines of Logs.
func (p *Process) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
