package recording

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testToken = "crm-token-0123456789abcdef"

func TestRecordingLinks(t *testing.T) {
	l := NewLinks(testToken, "https://pbx.example.com/recordings", time.Hour)
	now := time.Unix(1_800_000_000, 0)
	link := l.Link("office", "a/b+c=", now)
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	if u.EscapedPath() != "/recordings/office/a%2Fb+c=" || u.Query().Get("exp") != strconv.FormatInt(now.Add(time.Hour).Unix(), 10) {
		t.Errorf("link %s", link)
	}
	sig := u.Query().Get("sig")
	if len(sig) != 64 || strings.Contains(link, testToken) {
		t.Errorf("link %s", link)
	}
	exp := u.Query().Get("exp")
	if err := l.Check("office", "a/b+c=", exp, sig, now); err != nil {
		t.Errorf("fresh link: %v", err)
	}
	if err := l.Check("office", "a/b+c=", exp, strings.ToUpper(sig), now); err != nil {
		t.Errorf("hex is case-insensitive: %v", err)
	}
	if err := l.Check("office", "a/b+c=", exp, sig, now.Add(time.Hour)); err != ErrExpired {
		t.Errorf("at expiry: %v", err)
	}
	for _, bad := range [][4]string{
		{"office", "a/b+c", exp, sig},
		{"offic", "a/b+c=", exp, sig},
		{"office", "a/b+c=", exp + "0", sig},
		{"office", "a/b+c=", exp, sig[:62]},
		{"office", "a/b+c=", "", sig},
		// The fields are separated, so moving a character across the boundary changes the MAC.
		{"office\na/b", "+c=", exp, sig},
	} {
		if err := l.Check(bad[0], bad[1], bad[2], bad[3], now); err != ErrSignature {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := NewLinks("other", l.base, l.ttl).Check("office", "a/b+c=", exp, sig, now); err != ErrSignature {
		t.Errorf("another token's key accepted the link: %v", err)
	}
}
