package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Health{})
}

// Health is the pbx_health handler for load balancers: 200 when the queue is ready and the
// store can write and has room, 503 with a short JSON reason otherwise.
type Health struct {
	app *App
}

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pbx_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// Provision finds the pbx app.
func (h *Health) Provision(ctx caddy.Context) error {
	app, err := ctx.App("pbx")
	if err != nil {
		return err
	}
	h.app = app.(*App)
	return nil
}

func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	status, reason := http.StatusOK, ""
	eng := h.app.currentEngine()
	var unwritable error
	if eng != nil {
		unwritable = eng.Writable()
	}
	switch {
	case eng == nil || !eng.Ready():
		status, reason = http.StatusServiceUnavailable, "queue not ready"
	case unwritable != nil:
		status, reason = http.StatusServiceUnavailable, unwritable.Error()
	default:
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		full, err := eng.StoreFull(ctx)
		if err != nil {
			status, reason = http.StatusServiceUnavailable, "queue not answering"
		} else if full {
			status, reason = http.StatusServiceUnavailable, "store full"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if status != http.StatusOK {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	body := map[string]string{"status": "ok"}
	if reason != "" {
		body = map[string]string{"status": "unavailable", "reason": reason}
	}
	return json.NewEncoder(w).Encode(body)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Health)(nil)
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
)
