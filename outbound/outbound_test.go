package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		addr  string
		allow []string
		kind  string // "" when it may be dialed
	}{
		{"93.184.215.14", nil, ""},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", nil, ""},
		{"127.0.0.1", nil, "loopback"},
		{"127.8.9.10", nil, "loopback"},
		{"::1", nil, "loopback"},
		{"::ffff:127.0.0.1", nil, "loopback"},
		{"169.254.169.254", nil, "link-local"},
		{"fe80::1", nil, "link-local"},
		{"10.1.2.3", nil, "private"},
		{"172.16.0.1", nil, "private"},
		{"192.168.1.1", nil, "private"},
		{"fd00::1", nil, "private"},
		{"0.0.0.0", nil, "unspecified"},
		{"::", nil, "unspecified"},
		{"0.1.2.3", nil, "this network"},
		{"100.64.0.1", nil, "CGNAT"},
		{"255.255.255.255", nil, "broadcast"},
		{"224.0.0.1", nil, "multicast"},
		{"ff02::1", nil, "multicast"},
		{"64:ff9b::7f00:1", nil, "NAT64"},
		{"127.0.0.1", []string{"127.0.0.1"}, ""},
		{"127.0.0.1", []string{"127.0.0.0/8"}, ""},
		{"127.0.0.2", []string{"127.0.0.1/32"}, "loopback"},
		{"::ffff:127.0.0.1", []string{"127.0.0.1"}, ""},
		{"127.0.0.1", []string{"::ffff:127.0.0.0/104"}, ""},
		{"10.9.8.7", []string{"10.0.0.0/8", "192.168.0.0/16"}, ""},
		{"192.168.1.1", []string{"10.0.0.0/8"}, "private"},
	} {
		t.Run(fmt.Sprintf("%s allow %v", tt.addr, tt.allow), func(t *testing.T) {
			p, err := NewPolicy(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(netip.MustParseAddr(tt.addr))
			switch {
			case tt.kind == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.kind != "" && (err == nil || !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), tt.kind)):
				t.Fatalf("got %v, want a refusal naming %q", err, tt.kind)
			}
		})
	}
}

func TestNewPolicyRefusesNonsense(t *testing.T) {
	for _, s := range []string{"localhost", "10.0.0.0/33", "", "1.2.3"} {
		if _, err := NewPolicy([]string{s}); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestAnsweredChecksTheDialedAddress dials for real: the hook sees the address after DNS, so
// a name of the inside (localhost) is refused like the address itself.
func TestAnsweredChecksTheDialedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	closed, _ := NewPolicy(nil)
	open, _ := NewPolicy([]string{"127.0.0.0/8", "::1"})
	for _, tt := range []struct {
		name    string
		policy  *Policy
		url     string
		refused bool
	}{
		{"address", closed, srv.URL, true},
		{"name", closed, fmt.Sprintf("http://localhost:%d/", port), true},
		{"allowed", open, srv.URL, false},
		{"allowed name", open, fmt.Sprintf("http://localhost:%d/", port), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.policy.Answered().Get(tt.url)
			if err == nil {
				resp.Body.Close()
			}
			if refused := errors.Is(err, ErrInternal); refused != tt.refused {
				t.Fatalf("refused %v (%v), want %v", refused, err, tt.refused)
			}
			if !tt.refused && err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNoClientFollowsRedirects(t *testing.T) {
	var hits int
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	open, _ := NewPolicy([]string{"127.0.0.1"})
	for name, c := range map[string]*http.Client{"configured": Configured(0), "answered": open.Answered()} {
		resp, err := c.Post(redirect.URL, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("%s: status %d, want the 307 itself", name, resp.StatusCode)
		}
	}
	if hits != 0 {
		t.Fatalf("the redirect target got %d requests", hits)
	}
}

func TestClientsSendTheUserAgent(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.UserAgent() }))
	defer srv.Close()
	open, _ := NewPolicy([]string{"127.0.0.1"})
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"configured", Configured(0)}, {"answered", open.Answered()}} {
		for _, tt := range []struct{ set, want string }{
			{"", "pbxbridge/" + Version()},
			{"pbxbridge/test", "pbxbridge/test"},
		} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			if tt.set != "" {
				req.Header.Set("User-Agent", tt.set)
			}
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			resp.Body.Close()
			if ua := <-got; ua != tt.want {
				t.Errorf("%s, User-Agent set to %q: the server got %q, want %q", c.name, tt.set, ua, tt.want)
			}
			if req.Header.Get("User-Agent") != tt.set {
				t.Errorf("%s: the caller's request was changed", c.name)
			}
		}
	}
}
