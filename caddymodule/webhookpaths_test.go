package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestCheckWebhookPaths(t *testing.T) {
	path := func(p ...string) caddyhttp.MatcherSets {
		m := caddyhttp.MatchPath(p)
		return caddyhttp.MatcherSets{{&m}}
	}
	hostPath := func(h, p string) caddyhttp.MatcherSets {
		mh, mp := caddyhttp.MatchHost{h}, caddyhttp.MatchPath{p}
		return caddyhttp.MatcherSets{{&mp, &mh}}
	}
	hook := func(m caddyhttp.MatcherSets, account string) caddyhttp.Route {
		return caddyhttp.Route{MatcherSets: m, Handlers: []caddyhttp.MiddlewareHandler{&Webhook{Account: account}}}
	}
	site := func(host string, routes ...caddyhttp.Route) caddyhttp.Route {
		mh := caddyhttp.MatchHost{host}
		return caddyhttp.Route{MatcherSets: caddyhttp.MatcherSets{{&mh}},
			Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: routes}}}
	}
	for _, tt := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   string // empty: no error
	}{
		{"two paths", caddyhttp.RouteList{hook(path("/hooks/mango/*"), "office"), hook(path("/hooks/xvb"), "main")}, ""},
		{"one account on two paths", caddyhttp.RouteList{hook(path("/a/*"), "office"), hook(path("/b/*"), "office")}, ""},
		{"one account twice on a path", caddyhttp.RouteList{hook(path("/a/*"), "office"), hook(path("/a/*"), "office")}, ""},
		{"same path on two hosts", caddyhttp.RouteList{
			site("a.example.com", hook(path("/hooks/*"), "office")),
			site("b.example.com", hook(path("/hooks/*"), "shop")),
		}, ""},
		{"two accounts on one path", caddyhttp.RouteList{hook(path("/hooks/mango/*"), "office"), hook(path("/hooks/mango/*"), "shop")},
			"pbx_webhook office and pbx_webhook shop on one path (path /hooks/mango/*)"},
		{"two accounts on one path in a site", caddyhttp.RouteList{
			site("pbx.example.com", hook(path("/hooks/*"), "office"), hook(path("/hooks/*"), "shop")),
		}, "on one path (host pbx.example.com path /hooks/*)"},
		{"host and path in either order", caddyhttp.RouteList{hook(hostPath("x", "/h"), "office"), hook(hostPath("x", "/h"), "shop")},
			"on one path (host x, path /h)"},
		{"no matcher at all", caddyhttp.RouteList{hook(nil, "office"), hook(nil, "shop")}, "on one path (every request)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkWebhookPaths(&caddyhttp.App{Servers: map[string]*caddyhttp.Server{"srv0": {Routes: tt.routes}}})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
