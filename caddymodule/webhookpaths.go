package caddymodule

import (
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkWebhookPaths refuses a config in which two pbx_webhook handlers of different accounts
// sit behind the same matchers: the first answers every webhook, so the second account's PBX
// would be checked against the wrong key and sources and get 401s or 403s nobody expects.
// It walks the provisioned routes (their raw JSON is gone by then), subroutes included.
func checkWebhookPaths(httpApp *caddyhttp.App) error {
	for _, name := range sortedKeys(httpApp.Servers) {
		seen := map[string]string{} // matcher scope → account
		if err := walkWebhookRoutes(httpApp.Servers[name].Routes, "", seen); err != nil {
			return fmt.Errorf("server %s: %w", name, err)
		}
	}
	return nil
}

func walkWebhookRoutes(routes caddyhttp.RouteList, scope string, seen map[string]string) error {
	for _, route := range routes {
		routeScope := strings.TrimSpace(scope + " " + describeMatchers(route.MatcherSets))
		for _, h := range route.Handlers {
			switch h := h.(type) {
			case *Webhook:
				first, ok := seen[routeScope]
				if ok && first != h.Account {
					where := routeScope
					if where == "" {
						where = "every request"
					}
					return fmt.Errorf("pbx_webhook %s and pbx_webhook %s on one path (%s): only %s would ever get webhooks; give each account a path of its own, e.g. route /hooks/%s/* { pbx_webhook %s }",
						first, h.Account, where, first, h.Account, h.Account)
				}
				seen[routeScope] = h.Account
			case *caddyhttp.Subroute:
				if err := walkWebhookRoutes(h.Routes, routeScope, seen); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// describeMatchers names a route's matchers in a stable order, path and host readably; equal
// descriptions mean the same requests.
func describeMatchers(sets caddyhttp.MatcherSets) string {
	var ors []string
	for _, set := range sets {
		var ands []string
		for _, m := range set {
			switch m := m.(type) {
			case *caddyhttp.MatchPath:
				ands = append(ands, "path "+strings.Join(*m, " "))
			case *caddyhttp.MatchHost:
				ands = append(ands, "host "+strings.Join(*m, " "))
			default:
				ands = append(ands, fmt.Sprintf("%T %v", m, m))
			}
		}
		slices.Sort(ands)
		ors = append(ors, strings.Join(ands, ", "))
	}
	slices.Sort(ors)
	return strings.Join(ors, " | ")
}
