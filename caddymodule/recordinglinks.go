package caddymodule

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
)

// recordingLinks makes and checks the signed, expiring links to recordings that
// pbx_recordings serves and Mango recording events carry:
//
//	<public_url>/<account>/<escaped recording_id>?exp=<unix>&sig=<hex HMAC-SHA256>
//
// The HMAC covers account, recording id and expiry. Its key is derived from the handler's
// token, so a link never shows the token, and a new token retires every old link.
type recordingLinks struct {
	base string // public_url, no trailing slash
	key  []byte
	ttl  time.Duration
}

func newRecordingLinks(token, base string, ttl time.Duration) *recordingLinks {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("pbxbridge recording links"))
	return &recordingLinks{base: base, key: mac.Sum(nil), ttl: ttl}
}

func (l *recordingLinks) sign(account, id string, exp int64) []byte {
	mac := hmac.New(sha256.New, l.key)
	fmt.Fprintf(mac, "%s\n%s\n%d", account, id, exp)
	return mac.Sum(nil)
}

// link is the URL of a recording, valid for ttl from now.
func (l *recordingLinks) link(account, id string, now time.Time) string {
	exp := now.Add(l.ttl).Unix()
	return fmt.Sprintf("%s/%s/%s?exp=%d&sig=%s", l.base, url.PathEscape(account), url.PathEscape(id),
		exp, hex.EncodeToString(l.sign(account, id, exp)))
}

var (
	errLinkSignature = errors.New("the link's signature does not match (altered, or signed with another token)")
	errLinkExpired   = errors.New("the link has expired; the CRM gets a fresh one with each recording event")
)

// check verifies the exp and sig of a link to account's recording id at now. The signature
// is checked first, so "expired" is only ever said of a genuine link.
func (l *recordingLinks) check(account, id, exp, sig string, now time.Time) error {
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errLinkSignature
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, l.sign(account, id, expires)) {
		return errLinkSignature
	}
	if now.Unix() >= expires {
		return errLinkExpired
	}
	return nil
}

// same reports whether two handlers would make the same links.
func (l *recordingLinks) same(o *recordingLinks) bool {
	return l.base == o.base && l.ttl == o.ttl && hmac.Equal(l.key, o.key)
}

// setRecordingLinks is called by a pbx_recordings handler with a public_url when it is
// provisioned: from then on this config's Mango recording events carry its links. A reload
// provisions a new App and new handlers, so links always come from the running config.
func (a *App) setRecordingLinks(l *recordingLinks) error {
	if a.recordingLinks != nil && !a.recordingLinks.same(l) {
		return errors.New("another pbx_recordings handler already sets public_url with a different token, URL or link_ttl; events can carry only one link")
	}
	a.recordingLinks = l
	return nil
}

// linkRecordings gives recording.ready and call.completed events of an account whose
// recordings pbx_recordings fetches (a pbx.Recorder: Mango) that name a recording but have no
// URL a signed link to it, valid from now. Other PBXs send their own link, kept as given.
func (a *App) linkRecordings(events []event.Event, now time.Time) {
	if a.recordingLinks == nil {
		return
	}
	for i := range events {
		d := &events[i].Data
		typ := events[i].Type
		if (typ == event.TypeRecordingReady || typ == event.TypeCompleted) &&
			d.RecordingID != "" && d.RecordingURL == "" {
			d.RecordingURL = a.recordingLinks.link(d.Account, d.RecordingID, now)
		}
	}
}
