package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/pbxbridge/pbxbridge/delivery"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin is the `admin.api.pbx` module: queue status, dead letters and target pause on
// Caddy's admin endpoint. It resolves the pbx app at request time, so it always acts on the
// running config.
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pbx",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the admin routes under /pbx/.
func (a Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/pbx/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (Admin) serve(w http.ResponseWriter, r *http.Request) error {
	eng, err := runningEngine()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/pbx/"), "/"), "/")
	target := r.URL.Query().Get("target")
	route := r.Method + " " + parts[0]
	switch {
	case route == "GET status" && len(parts) == 1:
		st, err := eng.Status(ctx)
		return reply(w, st, err)
	case route == "GET dead-letters" && len(parts) == 1:
		dls, err := eng.DeadLetters(ctx, target)
		return reply(w, dls, err)
	case route == "POST dead-letters" && len(parts) == 2 && parts[1] == "replay":
		if target == "" {
			return apiError(http.StatusBadRequest, "replay all needs ?target=<name>")
		}
		n, err := eng.ReplayDeadLetters(ctx, target)
		return reply(w, map[string]any{"target": target, "replayed": n}, err)
	case route == "DELETE dead-letters" && len(parts) == 1:
		if target == "" {
			return apiError(http.StatusBadRequest, "purge needs ?target=<name>")
		}
		n, err := eng.PurgeDeadLetters(ctx, target)
		return reply(w, map[string]any{"target": target, "purged": n}, err)
	case route == "GET dead-letters" && len(parts) == 3:
		dl, _, err := eng.DeadLetter(ctx, parts[1], parts[2])
		return reply(w, dl, err)
	case route == "DELETE dead-letters" && len(parts) == 3:
		err := eng.DeleteDeadLetter(ctx, parts[1], parts[2])
		return reply(w, map[string]any{"id": parts[1] + "/" + parts[2], "deleted": true}, err)
	case route == "POST dead-letters" && len(parts) == 4 && parts[3] == "replay":
		err := eng.ReplayDeadLetter(ctx, parts[1], parts[2])
		return reply(w, map[string]any{"id": parts[1] + "/" + parts[2], "replayed": true}, err)
	case route == "POST targets" && len(parts) == 3 && (parts[2] == "pause" || parts[2] == "resume"):
		var err error
		if parts[2] == "pause" {
			err = eng.Pause(ctx, parts[1])
		} else {
			err = eng.Resume(ctx, parts[1])
		}
		return reply(w, map[string]any{"target": parts[1], "paused": parts[2] == "pause"}, err)
	}
	return apiError(http.StatusNotFound, fmt.Sprintf("no such pbx admin endpoint: %s %s", r.Method, r.URL.Path))
}

func runningEngine() (*delivery.Engine, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("pbx")
	if err != nil {
		return nil, apiError(http.StatusServiceUnavailable, "no pbx app in the running config")
	}
	eng := app.(*App).currentEngine() // during a reload, the running one
	if eng == nil {
		return nil, apiError(http.StatusServiceUnavailable, "the queue is not running")
	}
	return eng, nil
}

func reply(w http.ResponseWriter, v any, err error) error {
	if errors.Is(err, delivery.ErrNotFound) {
		return apiError(http.StatusNotFound, "not found")
	}
	if errors.Is(err, delivery.ErrNoTarget) {
		return apiError(http.StatusConflict, err.Error())
	}
	if errors.Is(err, delivery.ErrNotReady) { // a NATS node rejoining: try again shortly
		w.Header().Set("Retry-After", retryAfter)
		return apiError(http.StatusServiceUnavailable, err.Error())
	}
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func apiError(status int, msg string) error {
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg)}
}

// Interface guards
var _ caddy.AdminRouter = (*Admin)(nil)
