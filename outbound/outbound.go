// Package outbound is pbxbridge's one policy for the HTTP requests it makes: deliveries to
// targets, the contact lookup, commands to a PBX API and recording downloads.
//
// An endpoint the operator wrote in the config (a target URL, a lookup URL, an api_url) is
// trusted as written, private address or not: [Configured] dials it as any client would. What
// the operator did not write is not trusted:
//
//   - No client follows a redirect: a redirect is the answer. A protocol that needs one (Mango's
//     recording download answers 302 to a one-shot file URL) follows it by hand, with [Policy.Answered].
//   - A URL that came from a PBX or CRM answer (that 302's Location) is fetched with
//     [Policy.Answered], which refuses to connect to loopback, link-local, private, shared
//     (CGNAT), unspecified, "this network", broadcast and multicast addresses, unless the
//     operator's allow-list names the network. The check runs on the address actually dialed
//     (a net.Dialer Control hook), after DNS, so a name that resolves to an inside address,
//     or re-resolves to one (DNS rebinding), is refused too. It dials directly, never through
//     an HTTP proxy from the environment, whose address is all the hook would see.
package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"syscall"
	"time"
)

// Policy is the outbound policy of one configuration: the networks the operator allows URLs
// from answers to reach although they are internal.
type Policy struct {
	allow []netip.Prefix
}

// NewPolicy reads the allow-list: CIDRs or single addresses.
func NewPolicy(allow []string) (*Policy, error) {
	p := &Policy{}
	for _, s := range allow {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			ip, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an address", s)
			}
			pfx = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		p.allow = append(p.allow, pfx.Masked())
	}
	return p, nil
}

// internal are the networks, besides what netip classifies, that are not the public
// internet; together with loopback, link-local, private, unspecified and multicast they are
// refused for URLs from answers.
var internal = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "a \"this network\""},   // Linux connects 0.x to itself
	{netip.MustParsePrefix("100.64.0.0/10"), "a shared (CGNAT)"}, // carrier and cloud inside
	{netip.MustParsePrefix("255.255.255.255/32"), "a broadcast"},
	{netip.MustParsePrefix("64:ff9b::/96"), "a NAT64"}, // may embed any IPv4 address
}

// ErrInternal is what a refused dial wraps.
var ErrInternal = errors.New("internal address")

// Check returns nil when an address from an answer may be dialed, else why not (wrapping
// ErrInternal).
func (p *Policy) Check(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	kind := classify(addr)
	if kind == "" {
		return nil
	}
	if p != nil { // a nil Policy allows nothing internal
		for _, pfx := range p.allow {
			if pfx.Contains(addr) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s is %s address; URLs from a PBX or CRM answer may reach it only if outbound_allow names its network", ErrInternal, addr, kind)
}

// classify names the kind of an internal address, or "" for a public one.
func classify(addr netip.Addr) string {
	switch {
	case !addr.IsValid():
		return "not an"
	case addr.IsUnspecified():
		return "an unspecified"
	case addr.IsLoopback():
		return "a loopback"
	case addr.IsLinkLocalUnicast():
		return "a link-local"
	case addr.IsMulticast():
		return "a multicast"
	case addr.IsPrivate():
		return "a private"
	}
	for _, n := range internal {
		if n.prefix.Contains(addr) {
			return n.kind
		}
	}
	return ""
}

// control is the dialer's Control hook: it sees the address about to be connected to.
func (p *Policy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read dialed address %q", ErrInternal, address)
	}
	return p.Check(ap.Addr())
}

// noRedirects makes a client return a redirect as the answer.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Configured is the client of an endpoint the operator configured: dialed as written (through
// the environment's proxy, if any), redirects returned as answers. maxIdlePerHost bounds the
// kept connections per host; 0 is Go's default.
func Configured(maxIdlePerHost int) *http.Client {
	return &http.Client{
		Transport: agent{&http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: maxIdlePerHost,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		}},
		CheckRedirect: noRedirects,
	}
}

// Answered is the client of URLs that came from a PBX or CRM answer: only public addresses
// and the allow-list's are dialed, directly, and redirects are returned as answers.
func (p *Policy) Answered() *http.Client {
	return &http.Client{
		Transport: agent{&http.Transport{
			DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}).DialContext,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
		}},
		CheckRedirect: noRedirects,
	}
}

// agent sends [UserAgent] with a request that names no User-Agent, in place of Go's.
type agent struct{ *http.Transport }

func (a agent) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context()) // a RoundTripper must not modify the caller's request
		req.Header.Set("User-Agent", userAgent)
	}
	return a.Transport.RoundTrip(req)
}

var userAgent = "pbxbridge/" + Version()

// UserAgent is what pbxbridge's requests say they are: pbxbridge/<version>.
func UserAgent() string { return userAgent }

// Version is pbxbridge's version, from the build: the module's version when pbxbridge is a
// dependency (an xcaddy build), else the main module's as the go command stamped it, else "dev".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/pbxbridge/pbxbridge" {
				return dep.Version
			}
		}
		if bi.Main.Path == "github.com/pbxbridge/pbxbridge" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}

// Unwrap is the cause of a client's error without the *url.Error around it, which repeats
// the URL: an answered URL may be a one-shot credential, and a configured one is in the log
// already.
func Unwrap(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
