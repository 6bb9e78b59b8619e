package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// The exit status comes from the admin API's HTTP status, over TCP and over a unix socket,
// with the Host and Origin Caddy's admin endpoint checks.
func TestAdminCall(t *testing.T) {
	type seen struct{ host, origin string }
	requests := make(chan seen, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- seen{r.Host, r.Header.Get("Origin")}
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, `{"replayed":2}`)
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no dead letter crm/1"}`)
		default:
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		}
	})
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "admin.sock")
	unix, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []net.Listener{tcp, unix} {
		srv := &http.Server{Handler: handler}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}

	for _, tt := range []struct {
		name, address, path string
		status              int
		err                 string // "" for none
		host, origin        string
	}{
		{"tcp ok", tcp.Addr().String(), "/ok", exitOK, "", tcp.Addr().String(), "http://" + tcp.Addr().String()},
		{"tcp not found", tcp.Addr().String(), "/missing", exitNotFound, "POST /missing: no dead letter crm/1 (HTTP 404)", tcp.Addr().String(), "http://" + tcp.Addr().String()},
		{"tcp failure", tcp.Addr().String(), "/broken", exitFailed, "POST /broken: the gateway answered HTTP 503: store unavailable", tcp.Addr().String(), "http://" + tcp.Addr().String()},
		{"unix ok", "unix/" + socket, "/ok", exitOK, "", "127.0.0.1", ""},
		{"unix with permission bits", "unix/" + socket + "|0200", "/ok", exitOK, "", "127.0.0.1", ""},
		{"unix not found", "unix/" + socket, "/missing", exitNotFound, "POST /missing: no dead letter crm/1 (HTTP 404)", "127.0.0.1", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var res struct{ Replayed int }
			printed := false
			status, err := adminCall(adminFlagSet(t, tt.address), http.MethodPost, tt.path, &res, func(io.Writer) { printed = true })
			if status != tt.status || errText(err) != tt.err {
				t.Errorf("exit %d, %q; want %d, %q", status, errText(err), tt.status, tt.err)
			}
			if ok := tt.status == exitOK; printed != ok || (ok && res.Replayed != 2) {
				t.Errorf("printed %v, decoded %+v", printed, res)
			}
			if got := <-requests; got != (seen{tt.host, tt.origin}) {
				t.Errorf("the admin endpoint saw Host %q, Origin %q; want %q, %q", got.host, got.origin, tt.host, tt.origin)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		status, err := adminCall(adminFlagSet(t, "unix/"+filepath.Join(t.TempDir(), "none.sock")), http.MethodGet, "/ok", nil, func(io.Writer) {})
		if status != exitFailed || !strings.HasPrefix(errText(err), "the gateway's admin endpoint: performing request: ") {
			t.Errorf("exit %d, %v", status, err)
		}
	})
}

// adminFlagSet is the flags of an operator command with --address set.
func adminFlagSet(t *testing.T, address string) caddycmd.Flags {
	cmd := &cobra.Command{}
	adminFlags(cmd)
	if err := cmd.PersistentFlags().Set("address", address); err != nil {
		t.Fatal(err)
	}
	return caddycmd.Flags{FlagSet: cmd.PersistentFlags()}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
