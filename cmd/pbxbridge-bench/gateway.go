package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewayproc"
)

// Placeholders of the phase Caddyfiles and the peer's YAML besides gatewayproc's: the bench
// fills them in.
const (
	pCRM      = "{CRM}"       // the sink, http://127.0.0.1:<port>
	pMaxStore = "{MAX_STORE}" // pbx max_store
	pHTTPAddr = "{HTTP_ADDR}" // the site, 127.0.0.1:<port> (the peer's input)
)

// gateway is one run of the binary or of a peer (gatewayproc.Process): its own home, data and
// config directories, its listeners on free 127.0.0.1 ports, its output in gateway.log.
type gateway struct{ *gatewayproc.Process }

// startGateway runs bin on the Caddyfile config and returns once its admin endpoint answers
// and, with queue, once pbxbridge's queue is ready.
func startGateway(bin, dir, config string, queue bool) (*gateway, error) {
	g, err := gatewayproc.NewGateway(bin, dir, config)
	if err != nil {
		return nil, err
	}
	if err = g.Start(); err == nil && queue {
		if err = g.WaitReady(); err != nil {
			g.Stop()
		}
	}
	return &gateway{g.Process}, err
}

// startPeer runs a peer on its YAML and returns once the peer's /ready says its input and
// output are connected and its input listens.
func startPeer(bin, dir, yaml string) (*gateway, error) {
	p, err := gatewayproc.NewProcess(dir)
	if err != nil {
		return nil, err
	}
	p.Env = append(p.Env, "PEER_METRICS_ADDR="+p.MetricsAddr)
	yaml = strings.ReplaceAll(p.Fill(yaml), pHTTPAddr, fmt.Sprintf("127.0.0.1:%d", p.HTTPPort))
	config := filepath.Join(dir, "peer.yaml")
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	if err := p.Start(bin, "-c", config); err != nil {
		return nil, err
	}
	err = p.Poll(60*time.Second, "peer ready", func() bool {
		resp, err := http.Get("http://" + p.AdminAddr + "/ready")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTPPort))
		if err == nil {
			c.Close()
		}
		return resp.StatusCode == http.StatusOK && err == nil
	})
	if err != nil {
		p.Stop()
	}
	return &gateway{p}, err
}

// usage reads the process's CPU and allocation counters.
func (g *gateway) usage(ctx context.Context) (usage, error) {
	return readUsage(ctx, g.Pid(), g.Metrics)
}

// memory is what /proc/<pid>/status says of the process's resident memory, in bytes.
type memory struct {
	RSS  int64 // VmRSS: now
	Peak int64 // VmHWM: the high-water mark since start
}

func (g *gateway) memory() (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.Pid()))
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

// liveHeap is the heap still in use right after a collection: the runtime.MemStats HeapAlloc
// that the heap profile's text form (debug=1) reports, with gc=1 collecting first.
func (g *gateway) liveHeap(ctx context.Context) (int64, error) {
	body, err := get(ctx, "http://"+g.AdminAddr+"/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	defer body.Close()
	return parseHeapAlloc(body)
}

func parseHeapAlloc(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("heap profile: no HeapAlloc")
}

// profile saves a pprof profile from the admin endpoint (/debug/pprof/<name>?<query>) to path.
func (g *gateway) profile(ctx context.Context, name, query, path string) error {
	body, err := get(ctx, "http://"+g.AdminAddr+"/debug/pprof/"+name+"?"+query)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// get is the body of a GET of url that answered 200.
func get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}
