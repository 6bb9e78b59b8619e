package delivery

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The Standard Webhooks spec's own example.
const (
	sigTestSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	sigTestID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	sigTestTS     = 1614265330
	sigTestBody   = `{"test": 2432232314}`
	sigTestWant   = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// A second secret, for rotation.
const sigTestSecret2 = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="

// sigTestSpec signs straight from the spec's text, sharing no code with signature.go:
// base64(HMAC-SHA256(base64decode(secret without "whsec_"), "<id>.<timestamp>.<body>")).
func sigTestSpec(t *testing.T, secret, id string, ts int64, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// verifyByLibrary is the Standard Webhooks library's verdict on a webhook-signature header of
// sigTestID; the timestamp is not held against the clock.
func verifyByLibrary(t *testing.T, secret, timestamp string, body []byte, signature string) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set(standardwebhooks.HeaderWebhookID, sigTestID)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, timestamp)
	h.Set(standardwebhooks.HeaderWebhookSignature, signature)
	return wh.VerifyIgnoringTimestamp(body, h)
}

func sigTestSigner(t testing.TB, secrets ...string) *Signer {
	t.Helper()
	s, err := NewSigner(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignSpecVector(t *testing.T) {
	got := sigTestSigner(t, sigTestSecret).Sign(sigTestID, time.Unix(sigTestTS, 0), []byte(sigTestBody))
	if got != sigTestWant {
		t.Errorf("Sign = %q, want the spec's %q", got, sigTestWant)
	}
	if indep := sigTestSpec(t, sigTestSecret, sigTestID, sigTestTS, sigTestBody); indep != sigTestWant {
		t.Errorf("independent implementation = %q, want %q", indep, sigTestWant)
	}
}

// TestSignReferenceLibrary checks both directions against the Standard Webhooks Go library.
func TestSignReferenceLibrary(t *testing.T) {
	body := []byte(`{"specversion":"1.0","type":"call.completed","data":{"from":{"number":"+79123456789"}}}`)
	id := "5f0c9a7e1b3d4c2a8e6f0b1d3c5a7e9f"
	ts := time.Now() // the library checks its fixed 5-minute tolerance against time.Now

	for _, secret := range []string{sigTestSecret, sigTestSecret2} {
		ref, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		// Ours → library, including the two-signature header of a rotation.
		for _, s := range []*Signer{sigTestSigner(t, secret), sigTestSigner(t, sigTestSecret, sigTestSecret2)} {
			h := http.Header{}
			h.Set(standardwebhooks.HeaderWebhookID, id)
			h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
			h.Set(standardwebhooks.HeaderWebhookSignature, s.Sign(id, ts, body))
			if err := ref.Verify(body, h); err != nil {
				t.Errorf("reference library rejects our signature %q: %v", h.Get(standardwebhooks.HeaderWebhookSignature), err)
			}
		}
		// Library → ours.
		refSig, err := ref.Sign(id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		if ours := sigTestSigner(t, secret).Sign(id, ts, body); ours != refSig {
			t.Errorf("Sign = %q, reference library %q", ours, refSig)
		}
	}
}

func TestSignFreshPerAttempt(t *testing.T) {
	s := sigTestSigner(t, sigTestSecret)
	body := []byte(sigTestBody)
	first := time.Unix(sigTestTS, 0)
	later := first.Add(3*time.Hour + 17*time.Second) // a retry hours later
	sig1, sig2 := s.Sign(sigTestID, first, body), s.Sign(sigTestID, later, body)
	if sig1 == sig2 {
		t.Fatal("a retry with a new timestamp got the same signature")
	}
	if want := sigTestSpec(t, sigTestSecret, sigTestID, later.Unix(), sigTestBody); sig2 != want {
		t.Errorf("retry signature %q, independent %q", sig2, want)
	}
	laterTS := strconv.FormatInt(later.Unix(), 10)
	if err := verifyByLibrary(t, sigTestSecret, laterTS, body, sig2); err != nil {
		t.Errorf("fresh signature: %v", err)
	}
	// The first attempt's signature does not pass as the retry's.
	if err := verifyByLibrary(t, sigTestSecret, laterTS, body, sig1); err == nil {
		t.Error("old signature verified with the new timestamp")
	}
}

func TestSignRotation(t *testing.T) {
	body := []byte(sigTestBody)
	ts := time.Unix(sigTestTS, 0)
	got := sigTestSigner(t, sigTestSecret, sigTestSecret2).Sign(sigTestID, ts, body)
	want := sigTestSpec(t, sigTestSecret, sigTestID, sigTestTS, sigTestBody) + " " +
		sigTestSpec(t, sigTestSecret2, sigTestID, sigTestTS, sigTestBody)
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
	for _, secret := range []string{sigTestSecret, sigTestSecret2} {
		if err := verifyByLibrary(t, secret, strconv.Itoa(sigTestTS), body, got); err != nil {
			t.Errorf("%.12s…: %v", secret, err)
		}
	}
	// Each half alone verifies against its own secret only.
	old, fresh, _ := strings.Cut(got, " ")
	for _, tc := range []struct {
		secret, header string
		ok             bool
	}{
		{sigTestSecret, old, true},
		{sigTestSecret2, fresh, true},
		{sigTestSecret, fresh, false},
		{sigTestSecret2, old, false},
	} {
		err := verifyByLibrary(t, tc.secret, strconv.Itoa(sigTestTS), body, tc.header)
		if (err == nil) != tc.ok {
			t.Errorf("%.20s… against %.12s…: %v, want ok=%v", tc.header, tc.secret, err, tc.ok)
		}
	}
}

func TestNewSignerErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		secret  string // must not show up in the error
		want    string
	}{
		{"none", nil, "", "no webhook secret"},
		{"no prefix", []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `secret 1 does not start with "whsec_"`},
		{"other scheme", []string{"sk_live_TOPSECRETvalue"}, "TOPSECRETvalue", "does not start with"},
		{"not base64", []string{sigTestSecret, "whsec_TOP-SECRET-value!"}, "TOP-SECRET", "secret 2 is not whsec_<base64>"},
		{"empty key", []string{"whsec_"}, "", "secret 1 is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSigner(tc.secrets)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q reveals the secret", err)
			}
		})
	}
}

// BenchmarkSign is the signature of one delivery of a 1 KB body.
func BenchmarkSign(b *testing.B) {
	s := sigTestSigner(b, sigTestSecret)
	body, ts := bytes.Repeat([]byte("x"), 1024), time.Unix(sigTestTS, 0)
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(sigTestID, ts, body)
	}
}
