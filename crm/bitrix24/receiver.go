package bitrix24

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// Events the application binds (docs/bitrix24.md, Installation).
const (
	eventInstall    = "ONAPPINSTALL"
	eventUninstall  = "ONAPPUNINSTALL"
	eventCallStart  = "ONEXTERNALCALLSTART"
	maxReceivedForm = 64 << 10
)

var boundEvents = []string{eventCallStart, eventUninstall}

// setupTimeout bounds what an installation does before it answers the portal.
const setupTimeout = 30 * time.Second

// ServeHTTP takes the portal's form POSTs: the installation and the bound events.
func (c *connector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the Bitrix24 application's handler takes POSTs", http.StatusMethodNotAllowed)
		return
	}
	if c.webhook != "" {
		http.Error(w, "this target uses an inbound webhook, not an application", http.StatusNotFound)
		return
	}
	// The portal waits for the answer: its methods go before the deliveries'.
	r = r.WithContext(foreground(r.Context()))
	r.Body = http.MaxBytesReader(w, r.Body, maxReceivedForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "unreadable form", http.StatusBadRequest)
		return
	}
	ev := r.PostForm.Get("event")
	switch strings.ToUpper(ev) {
	case eventInstall:
		c.serveInstall(w, r)
	case eventUninstall:
		c.serveUninstall(w, r)
	case eventCallStart:
		c.serveCallStart(w, r)
	default:
		c.log.Warn("event not handled", zap.String("event", clip(ev)))
		http.Error(w, "event not handled", http.StatusBadRequest)
	}
}

// serveInstall stores the installation's pair once the portal accepts its access token, then
// binds the events and registers the lines.
func (c *connector) serveInstall(w http.ResponseWriter, r *http.Request) {
	f := r.PostForm
	domain, member := f.Get("auth[domain]"), f.Get("auth[member_id]")
	if !strings.EqualFold(domain, c.domain) || (c.memberID != "" && member != c.memberID) {
		c.log.Warn("installation refused: another portal", zap.String("domain", clip(domain)), zap.String("member_id", clip(member)))
		http.Error(w, "this pbxbridge target serves another portal", http.StatusForbidden)
		return
	}
	access, refresh, appToken := f.Get("auth[access_token]"), f.Get("auth[refresh_token]"), f.Get("auth[application_token]")
	if access == "" || refresh == "" || appToken == "" || member == "" {
		http.Error(w, "the installation lacks auth[access_token], auth[refresh_token], auth[application_token] or auth[member_id]", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), setupTimeout)
	defer cancel()
	// The portal itself vouches for the pair: a forged installation cannot replace a good one.
	bound, err := c.api.callAuth(ctx, "event.get", nil, access)
	if err != nil {
		c.log.Warn("installation refused: the portal does not take its access token", zap.Error(err))
		http.Error(w, "the portal does not take this installation's access token", http.StatusForbidden)
		return
	}
	expiresIn, _ := strconv.Atoi(f.Get("auth[expires_in]"))
	if expiresIn <= 0 {
		expiresIn = 3600
	}
	now := time.Now()
	in := &install{Status: statusInstalled, MemberID: member, Domain: domain, ApplicationToken: appToken,
		AccessToken: access, RefreshToken: refresh, Expires: now.Add(time.Duration(expiresIn) * time.Second), Issued: now, At: now}
	if err := c.replaceInstall(ctx, in); err != nil {
		c.log.Error("storing the installation", zap.Error(err))
		http.Error(w, "the store is not available; install again", http.StatusServiceUnavailable)
		return
	}
	if err := c.setUp(ctx, access, bound, c.handlerURL(r)); err != nil {
		c.log.Error("installation stored, setting up failed", zap.Error(err))
		http.Error(w, "installed, but binding the events or adding the lines failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	c.log.Info("installed", zap.String("domain", domain), zap.String("member_id", member))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"installed"}` + "\n"))
}

// replaceInstall overwrites the stored installation, whatever revision it is at.
func (c *connector) replaceInstall(ctx context.Context, in *install) error {
	for {
		_, rev, err := c.loadInstall(ctx)
		if err != nil {
			return err
		}
		if _, err = c.storeInstall(ctx, in, rev); !errors.Is(err, crm.ErrConflict) {
			return err
		}
	}
}

// setUp binds the events not yet bound to handler and adds the lines.
func (c *connector) setUp(ctx context.Context, access string, bound json.RawMessage, handler string) error {
	var handlers []struct {
		Event   string `json:"event"`
		Handler string `json:"handler"`
	}
	_ = json.Unmarshal(bound, &handlers)
	for _, ev := range boundEvents {
		already := false
		for _, h := range handlers {
			already = already || (strings.EqualFold(h.Event, ev) && h.Handler == handler)
		}
		if already {
			continue
		}
		if _, err := c.api.callAuth(ctx, "event.bind", url.Values{"event": {ev}, "handler": {handler}}, access); err != nil && !alreadyExists(err) {
			return err
		}
	}
	raw, err := c.api.callAuth(ctx, "telephony.externalLine.get", nil, access)
	if err != nil {
		return err
	}
	var lines []externalLine
	_ = json.Unmarshal(raw, &lines)
	for line := range c.lines {
		if slices.ContainsFunc(lines, func(l externalLine) bool { return l.Number == line }) {
			continue
		}
		params := url.Values{"NUMBER": {line}, "NAME": {"pbxbridge " + line}}
		if _, err := c.api.callAuth(ctx, "telephony.externalLine.add", params, access); err != nil && !alreadyExists(err) {
			return err
		}
	}
	return nil
}

type externalLine struct {
	Number string `json:"NUMBER"`
}

func alreadyExists(err error) bool {
	var e *apiError
	return errors.As(err, &e) && strings.Contains(strings.ToLower(e.desc), "already exists")
}

// handlerURL is where the portal sends the events: handler_url, else this request's URL.
func (c *connector) handlerURL(r *http.Request) string {
	if c.handler != "" {
		return c.handler
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host + r.URL.Path
}

// verified is the stored installation if the event carries its application_token and
// member_id; otherwise it answers 401 or 403 itself.
func (c *connector) verified(w http.ResponseWriter, r *http.Request) (*install, uint64, bool) {
	in, rev, err := c.loadInstall(r.Context())
	if err != nil {
		http.Error(w, "the store is not available", http.StatusServiceUnavailable)
		return nil, 0, false
	}
	token := r.PostForm.Get("auth[application_token]")
	if in == nil || in.ApplicationToken == "" || subtle.ConstantTimeCompare([]byte(token), []byte(in.ApplicationToken)) != 1 {
		c.log.Warn("event refused: wrong application_token", zap.String("event", clip(r.PostForm.Get("event"))))
		http.Error(w, "wrong application_token", http.StatusUnauthorized)
		return nil, 0, false
	}
	if member := r.PostForm.Get("auth[member_id]"); member != in.MemberID {
		c.log.Warn("event refused: another portal", zap.String("member_id", clip(member)))
		http.Error(w, "another portal", http.StatusForbidden)
		return nil, 0, false
	}
	return in, rev, true
}

// serveUninstall marks the installation uninstalled: delivery stops with that reason.
func (c *connector) serveUninstall(w http.ResponseWriter, r *http.Request) {
	in, rev, ok := c.verified(w, r)
	if !ok {
		return
	}
	gone := &install{Status: statusUninstalled, MemberID: in.MemberID, Domain: in.Domain, At: time.Now()}
	if _, err := c.storeInstall(r.Context(), gone, rev); err != nil && !errors.Is(err, crm.ErrConflict) {
		http.Error(w, "the store is not available", http.StatusServiceUnavailable)
		return
	} else if err != nil {
		// Refreshed meanwhile: uninstalled all the same.
		if err := c.replaceInstall(r.Context(), gone); err != nil {
			http.Error(w, "the store is not available", http.StatusServiceUnavailable)
			return
		}
	}
	c.log.Warn("uninstalled: delivery stops until the application is installed again", zap.String("domain", in.Domain))
	w.WriteHeader(http.StatusOK)
}

// clickToCall is what the store keeps of a call an employee started from Bitrix24, under the
// command_id it was originated with, so the PBX's events of it finish Bitrix24's CALL_ID.
type clickToCall struct {
	CallID string `json:"call_id"`
	UserID string `json:"user_id"`
}

// serveCallStart originates the call an employee clicked in Bitrix24 (already registered there).
func (c *connector) serveCallStart(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := c.verified(w, r); !ok {
		return
	}
	f := r.PostForm
	callID, userID := f.Get("data[CALL_ID]"), f.Get("data[USER_ID]")
	to := f.Get("data[PHONE_NUMBER_INTERNATIONAL]")
	if to == "" {
		to = f.Get("data[PHONE_NUMBER]")
	}
	line := f.Get("data[LINE_NUMBER]")
	if callID == "" || userID == "" || to == "" {
		http.Error(w, "ONEXTERNALCALLSTART without data[CALL_ID], data[USER_ID] or data[PHONE_NUMBER]", http.StatusBadRequest)
		return
	}
	account := c.lines[line]
	if account == "" {
		account = c.account
	}
	ctx, cancel := context.WithTimeout(r.Context(), setupTimeout)
	defer cancel()
	if account == "" || c.env.Originate == nil {
		c.log.Error("click-to-call: no account for the line", zap.String("line", clip(line)))
		c.finishClicked(ctx, callID, userID, "503")
		http.Error(w, "no PBX account for this line (lines, account)", http.StatusUnprocessableEntity)
		return
	}
	ext, err := c.extension(ctx, userID)
	if err != nil {
		c.log.Error("click-to-call: the user's extension not read", zap.String("user_id", clip(userID)), zap.Error(err))
		c.finishClicked(ctx, callID, userID, "503")
		http.Error(w, "the portal did not answer user.get", http.StatusServiceUnavailable)
		return
	}
	if ext == "" {
		c.log.Error("click-to-call: no extension for the user", zap.String("user_id", clip(userID)))
		c.finishClicked(ctx, callID, userID, "OTHER")
		http.Error(w, "the employee has no inner phone number (UF_PHONE_INNER) or users entry", http.StatusUnprocessableEntity)
		return
	}
	commandID := commandIDFor(callID)
	if err := c.putJSON(ctx, commandKey(commandID), clickToCall{CallID: callID, UserID: userID}); err != nil {
		http.Error(w, "the store is not available", http.StatusServiceUnavailable)
		return
	}
	ans := c.env.Originate(ctx, pbx.CommandRequest{Account: account, CommandID: commandID, From: ext, To: to, Line: line})
	c.log.Info("click-to-call", zap.String("account", account), zap.String("command_id", commandID),
		zap.String("outcome", ans.Outcome), zap.Int("status", ans.Status))
	if ans.Body.Status != "accepted" {
		c.finishClicked(ctx, callID, userID, "503")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(ans.Body)
}

// finishClicked closes a clicked call the PBX never placed, so the employee's card does not
// hang.
func (c *connector) finishClicked(ctx context.Context, callID, userID, status string) {
	params := url.Values{"CALL_ID": {callID}, "USER_ID": {userID}, "DURATION": {"0"}, "STATUS_CODE": {status}}
	if _, err := c.api.call(ctx, "telephony.externalCall.finish", params); err != nil {
		c.log.Warn("finishing a click-to-call the PBX did not place", zap.Error(err))
	}
}

// commandIDFor derives the command_id of a click from Bitrix24's CALL_ID, so that the
// portal's repeat of the event originates nothing twice.
func commandIDFor(callID string) string {
	sum := sha256.Sum256([]byte(callID))
	return "b24-" + hex.EncodeToString(sum[:12])
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
