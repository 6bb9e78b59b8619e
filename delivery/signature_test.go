package delivery

import (
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

func sigTestSigner(t *testing.T, secrets ...string) *Signer {
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
	err := VerifySignature([]string{sigTestSecret}, sigTestID, strconv.Itoa(sigTestTS), []byte(sigTestBody), sigTestWant, time.Unix(sigTestTS, 0), 5*time.Minute)
	if err != nil {
		t.Errorf("VerifySignature of the spec vector: %v", err)
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
		if err := VerifySignature([]string{secret}, id, strconv.FormatInt(ts.Unix(), 10), body, refSig, ts, 5*time.Minute); err != nil {
			t.Errorf("VerifySignature rejects the library's signature: %v", err)
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
	if err := VerifySignature([]string{sigTestSecret}, sigTestID, laterTS, body, sig2, later.Add(2*time.Second), 5*time.Minute); err != nil {
		t.Errorf("fresh signature: %v", err)
	}
	// The first attempt's signature does not pass as the retry's.
	if err := VerifySignature([]string{sigTestSecret}, sigTestID, laterTS, body, sig1, later, 5*time.Minute); err == nil {
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
	for _, secrets := range [][]string{{sigTestSecret}, {sigTestSecret2}, {sigTestSecret2, sigTestSecret}} {
		if err := VerifySignature(secrets, sigTestID, strconv.Itoa(sigTestTS), body, got, ts, 0); err != nil {
			t.Errorf("secrets %d: %v", len(secrets), err)
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
		err := VerifySignature([]string{tc.secret}, sigTestID, strconv.Itoa(sigTestTS), body, tc.header, ts, 0)
		if (err == nil) != tc.ok {
			t.Errorf("%.20s… against %.12s…: %v, want ok=%v", tc.header, tc.secret, err, tc.ok)
		}
	}
}

func TestVerifySignature(t *testing.T) {
	ts := time.Unix(sigTestTS, 0)
	tsText := strconv.Itoa(sigTestTS)
	good := sigTestWant
	for _, tc := range []struct {
		name      string
		secrets   []string
		id, ts    string
		body      string
		header    string
		now       time.Time
		tolerance time.Duration
		wantErr   string // "" = verifies
	}{
		{"good", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, good, ts, 5 * time.Minute, ""},
		{"unknown schemes and junk are skipped", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, "v1a,xyz junk v1,!!! v1," + " " + good, ts, 0, ""},
		{"tampered body", []string{sigTestSecret}, sigTestID, tsText, `{"test": 2432232315}`, good, ts, 0, "no v1 signature"},
		{"tampered id", []string{sigTestSecret}, sigTestID + "x", tsText, sigTestBody, good, ts, 0, "no v1 signature"},
		{"tampered timestamp", []string{sigTestSecret}, sigTestID, strconv.Itoa(sigTestTS + 1), sigTestBody, good, ts, 0, "no v1 signature"},
		{"re-formatted timestamp", []string{sigTestSecret}, sigTestID, "0" + tsText, sigTestBody, good, ts, 0, "no v1 signature"},
		{"wrong secret", []string{sigTestSecret2}, sigTestID, tsText, sigTestBody, good, ts, 0, "no v1 signature"},
		{"wrong version", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, "v2" + strings.TrimPrefix(good, "v1"), ts, 0, "no v1 signature"},
		{"too old", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, good, ts.Add(5*time.Minute + time.Second), 5 * time.Minute, "tolerance"},
		{"too new", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, good, ts.Add(-5*time.Minute - time.Second), 5 * time.Minute, "tolerance"},
		{"at the edge of tolerance", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, good, ts.Add(5 * time.Minute), 5 * time.Minute, ""},
		{"no tolerance check", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, good, ts.AddDate(5, 0, 0), 0, ""},
		{"timestamp not a number", []string{sigTestSecret}, sigTestID, "2021-02-26T15:02:10Z", sigTestBody, good, ts, 0, "not unix seconds"},
		{"missing id", []string{sigTestSecret}, "", tsText, sigTestBody, good, ts, 0, "required"},
		{"missing signature", []string{sigTestSecret}, sigTestID, tsText, sigTestBody, "", ts, 0, "required"},
		{"bad secret", []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, sigTestID, tsText, sigTestBody, good, ts, 0, "whsec_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(tc.secrets, tc.id, tc.ts, []byte(tc.body), tc.header, tc.now, tc.tolerance)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
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
