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
	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
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
	app, err := caddy.ActiveContext().AppIfConfigured("pbx")
	if err != nil {
		return apiError(http.StatusServiceUnavailable, "no pbx app in the running config")
	}
	return servePBX(w, r, app.(*App), strings.TrimPrefix(r.URL.Path, "/pbx/"), caller{via: "admin_api"})
}

// caller is who asked for an admin action, for the audit log: via the admin API or the
// console, and the console's user where Caddy's authentication names one.
type caller struct{ via, user string }

// servePBX answers one request of the pbx admin API; path is what follows /pbx/. The admin
// endpoint and pbx_console both serve it, so that an action from the console has the same
// checks and the same audit log line as one from the CLI.
func servePBX(w http.ResponseWriter, r *http.Request, app *App, path string, by caller) error {
	eng := app.currentEngine() // during a reload, the running one
	if eng == nil {
		return apiError(http.StatusServiceUnavailable, "the queue is not running")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	parts := strings.Split(strings.Trim(path, "/"), "/")
	query := r.URL.Query()
	target := query.Get("target")
	route := r.Method + " " + parts[0]
	switch {
	case route == "GET status" && len(parts) == 1:
		st, err := eng.Status(ctx)
		return reply(w, st, err)
	case route == "GET dead-letters" && len(parts) == 1:
		dls, err := eng.DeadLetters(ctx, target)
		return reply(w, dls, err)
	case route == "GET calls" && len(parts) == 1:
		calls, err := eng.FindCalls(ctx, query.Get("call_id"), event.Number(query.Get("phone"), app.Region))
		if errors.Is(err, delivery.ErrNoQuery) {
			return apiError(http.StatusBadRequest, err.Error())
		}
		return reply(w, calls, err)
	case route == "POST dead-letters" && len(parts) == 2 && parts[1] == "replay":
		if target == "" {
			return apiError(http.StatusBadRequest, "replay all needs ?target=<name>")
		}
		n, err := eng.ReplayDeadLetters(ctx, target)
		audit(r, by, "replay_all", target, n, err)
		return reply(w, map[string]any{"target": target, "replayed": n}, err)
	case route == "DELETE dead-letters" && len(parts) == 1:
		if target == "" {
			return apiError(http.StatusBadRequest, "purge needs ?target=<name>")
		}
		n, err := eng.PurgeDeadLetters(ctx, target)
		audit(r, by, "purge", target, n, err)
		return reply(w, map[string]any{"target": target, "purged": n}, err)
	case route == "GET dead-letters" && len(parts) == 3:
		dl, _, err := eng.DeadLetter(ctx, parts[1], parts[2])
		return reply(w, dl, err)
	case route == "DELETE dead-letters" && len(parts) == 3:
		err := eng.DeleteDeadLetter(ctx, parts[1], parts[2])
		audit(r, by, "delete", parts[1]+"/"+parts[2], 1, err)
		return reply(w, map[string]any{"id": parts[1] + "/" + parts[2], "deleted": true}, err)
	case route == "POST dead-letters" && len(parts) == 4 && parts[3] == "replay":
		err := eng.ReplayDeadLetter(ctx, parts[1], parts[2])
		audit(r, by, "replay", parts[1]+"/"+parts[2], 1, err)
		return reply(w, map[string]any{"id": parts[1] + "/" + parts[2], "replayed": true}, err)
	case route == "POST targets" && len(parts) == 3 && (parts[2] == "pause" || parts[2] == "resume"):
		var err error
		if parts[2] == "pause" {
			err = eng.Pause(ctx, parts[1])
		} else {
			err = eng.Resume(ctx, parts[1])
		}
		audit(r, by, parts[2], parts[1], 1, err)
		return reply(w, map[string]any{"target": parts[1], "paused": parts[2] == "pause"}, err)
	}
	return apiError(http.StatusNotFound, fmt.Sprintf("no such pbx admin endpoint: %s %s", r.Method, r.URL.Path))
}

// audit logs an action that changed the queue (docs/operations.md#the-audit-log): what, on
// which target or dead letter, by whom, and whether it was done. n counts what it did.
func audit(r *http.Request, by caller, action, object string, n int, err error) {
	fields := []zap.Field{
		zap.String("action", action),
		zap.String("object", object),
		zap.String("via", by.via),
		zap.String("remote_addr", r.RemoteAddr),
	}
	if by.user != "" {
		fields = append(fields, zap.String("user", by.user))
	}
	log := caddy.Log().Named("pbx.audit")
	if err != nil {
		log.Warn("admin action failed", append(fields, zap.Error(err))...)
		return
	}
	log.Info("admin action", append(fields, zap.Int("count", n))...)
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
