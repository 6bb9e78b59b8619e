package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildBinary builds ./cmd/pbxbridge of the module the tool runs in, without -race: the
// benchmark measures what users run.
func buildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "pbxbridge")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pbxbridge/pbxbridge/cmd/pbxbridge").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Placeholders of the phase Caddyfiles and the peer's YAML; startProcess fills them in.
const (
	pAdmin    = "{ADMIN}"     // the admin address, for `admin {ADMIN}`
	pSite     = "{SITE}"      // the webhook site, http://127.0.0.1:<port>
	pSiteAddr = "{SITE_ADDR}" // the same, 127.0.0.1:<port>
	pMetrics  = "{METRICS}"   // the metrics site
	pData     = "{DATA}"      // pbx data_dir
	pCRM      = "{CRM}"       // the sink, http://127.0.0.1:<port>
)

// gateway is one run of the binary (or of a peer): its own home, data and config directories
// under dir, its listeners on free 127.0.0.1 ports, its output in dir/gateway.log.
type gateway struct {
	dir     string
	admin   string // 127.0.0.1:port
	site    string // http://127.0.0.1:port
	metrics string // URL of its Prometheus text metrics
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// startGateway runs bin with the Caddyfile config; startPeer runs a peer with its YAML.
func startGateway(bin, dir, caddyfile, crmURL string) (*gateway, error) {
	return startProcess(dir, caddyfile, crmURL, "Caddyfile", func(config string, ports []int) (*exec.Cmd, string) {
		return exec.Command(bin, "run", "--config", config, "--adapter", "caddyfile"),
			fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[2])
	})
}

func startPeer(bin, dir, yaml, crmURL string) (*gateway, error) {
	return startProcess(dir, yaml, crmURL, "peer.yaml", func(config string, ports []int) (*exec.Cmd, string) {
		cmd := exec.Command(bin, "-c", config)
		addr := fmt.Sprintf("127.0.0.1:%d", ports[2])
		cmd.Env = append(os.Environ(), "PEER_METRICS_ADDR="+addr)
		return cmd, "http://" + addr + "/metrics"
	})
}

// startProcess fills in config's placeholders, writes it to dir/name and starts the command
// that command makes of it, which also says where the process's metrics are.
func startProcess(dir, config, crmURL, name string, command func(config string, ports []int) (*exec.Cmd, string)) (*gateway, error) {
	g := &gateway{dir: dir, logPath: filepath.Join(dir, "gateway.log")}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	g.admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	g.site = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	config = strings.NewReplacer(
		pAdmin, g.admin,
		pSite, g.site,
		pSiteAddr, strings.TrimPrefix(g.site, "http://"),
		pMetrics, fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		pData, filepath.Join(dir, "store"),
		pCRM, crmURL,
	).Replace(config)
	configPath := filepath.Join(dir, name)
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	g.cmd, g.metrics = command(configPath, ports)
	if g.cmd.Env == nil {
		g.cmd.Env = os.Environ()
	}
	g.cmd.Env = append(g.cmd.Env,
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
	)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	g.exited = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.exited) }()
	if err := g.waitListening(); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are chosen, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitListening polls the admin endpoint and the site until both accept connections: a
// starting process gives no other signal.
func (g *gateway) waitListening() error {
	return g.poll(60*time.Second, "listeners", func() bool {
		for _, addr := range []string{g.admin, strings.TrimPrefix(g.site, "http://")} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return false
			}
			c.Close()
		}
		return true
	})
}

// waitQueueReady polls pbxbridge's status until webhooks would be accepted: the queue starts
// after the listener.
func (g *gateway) waitQueueReady() error {
	return g.poll(60*time.Second, "queue ready", func() bool {
		resp, err := http.Get("http://" + g.admin + "/pbx/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"ready":true`))
	})
}

func (g *gateway) poll(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			return fmt.Errorf("gateway exited while waiting for %s:\n%s", what, g.logTail(30))
		default:
		}
		if cond() {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("gateway: no %s within %s:\n%s", what, timeout, g.logTail(30))
}

// stop ends the process it started, by its pid: SIGTERM, then SIGKILL after 60 s.
func (g *gateway) stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(60 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// usage reads the process's CPU and allocation counters.
func (g *gateway) usage(ctx context.Context) (usage, error) {
	return readUsage(ctx, g.cmd.Process.Pid, g.metrics)
}

// memory is what /proc/<pid>/status says of the process's resident memory, in bytes.
type memory struct {
	RSS  int64 // VmRSS: now
	Peak int64 // VmHWM: the high-water mark since start
}

func (g *gateway) memory() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), ":")
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("/proc status %s: %w", name, err)
		}
		*dst = kb << 10
	}
	if m.Peak == 0 {
		return memory{}, errors.New("/proc status: no VmHWM")
	}
	return m, sc.Err()
}

// profile saves a pprof profile from the admin endpoint (/debug/pprof/<name>?<query>) to path.
func (g *gateway) profile(ctx context.Context, name, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.admin+"/debug/pprof/"+name+"?"+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (g *gateway) logTail(n int) string {
	b, _ := os.ReadFile(g.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
