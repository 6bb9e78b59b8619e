package caddymodule

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/outbound"
)

// mangoWebhookSources are the addresses Mango Office documents as the senders of its
// webhooks (API doc v1.9, 2026: §1.2, §3.1.1). The 185.71.76.0/27, 185.71.77.0/27 and
// 77.75.x ranges that some guides attribute to Mango are YooKassa's and are not included.
var mangoWebhookSources = []string{"81.88.80.132", "81.88.80.133", "81.88.82.36", "81.88.82.44", "81.88.82.45"}

const (
	defaultMangoAPI     = "https://app.mango-office.ru/vpbx"
	defaultLookupTimout = 2 * time.Second
)

// account is a provisioned PBX account: what the handlers need at request time.
type account struct {
	pbx     string // "mango" or "xvb"
	name    string
	source  event.Source
	sources []netip.Prefix // nil: any address
	forward []string

	// mango
	apiKey, apiSalt, apiURL string
	staleAfter              time.Duration
	// xvb
	accessCode, secret, token string
	lookup                    *lookup
}

func (m *MangoAccount) provision(name string, repl *caddy.Replacer) (*account, error) {
	if m == nil {
		return nil, errors.New("empty account block")
	}
	acc := &account{
		pbx:     "mango",
		name:    name,
		apiKey:  repl.ReplaceKnown(m.APIKey, ""),
		apiSalt: repl.ReplaceKnown(m.APISalt, ""),
		apiURL:  strings.TrimSuffix(repl.ReplaceKnown(m.APIURL, ""), "/"),
		forward: m.Forward,

		staleAfter: time.Duration(m.StaleAfter),
	}
	if acc.apiKey == "" {
		return nil, errors.New("api_key is required (Mango personal account → Integrations → API connector: \"Уникальный код вашей АТС\")")
	}
	if acc.apiSalt == "" {
		return nil, errors.New("api_salt is required (Mango personal account → Integrations → API connector: \"Ключ для создания подписи\")")
	}
	if acc.apiURL == "" {
		acc.apiURL = defaultMangoAPI
	}
	sources := m.Sources
	if len(sources) == 0 {
		sources = []string{"mango"}
	}
	var err error
	if acc.sources, err = parseSources(sources); err != nil {
		return nil, err
	}
	return acc, nil
}

func (x *XVBAccount) provision(name string, repl *caddy.Replacer) (*account, error) {
	if x == nil {
		return nil, errors.New("empty account block")
	}
	acc := &account{
		pbx:        "xvb",
		name:       name,
		accessCode: repl.ReplaceKnown(x.AccessCode, ""),
		secret:     repl.ReplaceKnown(x.Secret, ""),
		token:      repl.ReplaceKnown(x.Token, ""),
		apiURL:     strings.TrimSuffix(repl.ReplaceKnown(x.APIURL, ""), "/"),
		forward:    x.Forward,
	}
	if acc.accessCode == "" {
		return nil, errors.New("access_code is required (XVB settings page → Integrations → CommonCRM)")
	}
	if len(x.Sources) == 0 {
		return nil, errors.New("sources is required: XVB signs nothing and publishes no addresses; give your XVB server's addresses, or `sources any` to accept any sender")
	}
	var err error
	if acc.sources, err = parseSources(x.Sources); err != nil {
		return nil, err
	}
	if x.Lookup != nil {
		if acc.lookup, err = x.Lookup.provision(repl); err != nil {
			return nil, fmt.Errorf("lookup: %w", err)
		}
	}
	return acc, nil
}

// parseSources reads `sources`: presets, CIDRs and addresses; `any` turns the check off.
func parseSources(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		switch s {
		case "any":
			if len(in) > 1 {
				return nil, errors.New("sources: `any` cannot be combined with addresses")
			}
			return nil, nil
		case "mango":
			for _, ip := range mangoWebhookSources {
				out = append(out, netip.PrefixFrom(netip.MustParseAddr(ip), 32))
			}
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("sources: %q is not a CIDR: %v", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("sources: %q is not an address, a CIDR, `mango` or `any`", s)
		}
		out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
	}
	return out, nil
}

// allows reports whether a webhook from ip may be for this account.
func (acc *account) allows(ip netip.Addr) bool {
	if acc.sources == nil {
		return true
	}
	ip = ip.Unmap()
	for _, p := range acc.sources {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// secretMatches is the one comparison of a presented secret (token, ?token=, ?key=) with the
// configured one: exact, byte for byte, in constant time. Nothing is trimmed or decoded
// beyond what HTTP itself does (a query value is URL-decoded).
func secretMatches(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// bearerMatches checks an Authorization header against want: the scheme Bearer (any case,
// RFC 9110 §11.1), one space, then exactly the token (RFC 6750 §2.1). `Bearer  <token>` with
// two spaces is a wrong token.
func bearerMatches(authorization, want string) bool {
	scheme, token, ok := strings.Cut(authorization, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && secretMatches(token, want)
}

func (l *Lookup) provision(repl *caddy.Replacer) (*lookup, error) {
	u := repl.ReplaceKnown(l.URL, "")
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, errors.New("url must be an http:// or https:// URL")
	}
	lk := &lookup{url: u, header: http.Header{}, timeout: time.Duration(l.Timeout), ttl: time.Duration(l.Cache), client: outbound.Configured(0)}
	if lk.timeout <= 0 {
		lk.timeout = defaultLookupTimout
	}
	for k, vs := range l.Headers {
		for _, v := range vs {
			lk.header.Add(k, repl.ReplaceKnown(v, ""))
		}
	}
	return lk, nil
}
