// Package recording makes and checks the signed, expiring links to recordings that
// pbx_recordings serves (docs/recordings.md, Signed links).
package recording

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Links makes and checks the signed, expiring links to recordings that
// pbx_recordings serves and Mango recording events carry:
//
//	<public_url>/<account>/<escaped recording_id>?exp=<unix>&sig=<hex HMAC-SHA256>
//
// The HMAC covers account, recording id and expiry. Its key is derived from the handler's
// token, so a link never shows the token, and a new token retires every old link.
type Links struct {
	base string // public_url, no trailing slash
	key  []byte
	ttl  time.Duration
}

// NewLinks makes the links of a pbx_recordings handler: its token keys them, base is its
// public_url and ttl how long a link works.
func NewLinks(token, base string, ttl time.Duration) *Links {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("pbxbridge recording links"))
	return &Links{base: base, key: mac.Sum(nil), ttl: ttl}
}

func (l *Links) sign(account, id string, exp int64) []byte {
	mac := hmac.New(sha256.New, l.key)
	fmt.Fprintf(mac, "%s\n%s\n%d", account, id, exp)
	return mac.Sum(nil)
}

// Link is the URL of a recording, valid for ttl from now.
func (l *Links) Link(account, id string, now time.Time) string {
	exp := now.Add(l.ttl).Unix()
	return fmt.Sprintf("%s/%s/%s?exp=%d&sig=%s", l.base, url.PathEscape(account), url.PathEscape(id),
		exp, hex.EncodeToString(l.sign(account, id, exp)))
}

var (
	ErrSignature = errors.New("the link's signature does not match (altered, or signed with another token)")
	ErrExpired   = errors.New("the link has expired; the CRM gets a fresh one with each recording event")
)

// Check verifies the exp and sig of a link to account's recording id at now. The signature
// is checked first, so "expired" is only ever said of a genuine link.
func (l *Links) Check(account, id, exp, sig string, now time.Time) error {
	expires, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrSignature
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, l.sign(account, id, expires)) {
		return ErrSignature
	}
	if now.Unix() >= expires {
		return ErrExpired
	}
	return nil
}

// Same reports whether two handlers would make the same links.
func (l *Links) Same(o *Links) bool {
	return l.base == o.base && l.ttl == o.ttl && hmac.Equal(l.key, o.key)
}

// Base is the public_url the links are under; TTL how long one works.
func (l *Links) Base() string       { return l.base }
func (l *Links) TTL() time.Duration { return l.ttl }
