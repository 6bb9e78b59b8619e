package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sigSecretPrefix marks a Standard Webhooks secret; the rest is the key in standard base64.
const sigSecretPrefix = "whsec_"

// Signer signs deliveries with Standard Webhooks (https://www.standardwebhooks.com/) secrets.
// Secrets are "whsec_<base64>"; two secrets while rotating → two signatures, space separated.
// It is safe for concurrent use.
type Signer struct {
	keys [][]byte
}

// NewSigner decodes the secrets. Errors name the secret by position only: config errors are
// logged, and the secret must not be.
func NewSigner(secrets []string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no webhook secret")
	}
	s := &Signer{keys: make([][]byte, 0, len(secrets))}
	for i, secret := range secrets {
		encoded, ok := strings.CutPrefix(secret, sigSecretPrefix)
		if !ok {
			return nil, fmt.Errorf("webhook secret %d does not start with %q", i+1, sigSecretPrefix)
		}
		key, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			// base64's error carries only an offset, never the input.
			return nil, fmt.Errorf("webhook secret %d is not %s<base64>: %w", i+1, sigSecretPrefix, err)
		}
		if len(key) == 0 {
			return nil, fmt.Errorf("webhook secret %d is empty", i+1)
		}
		s.keys = append(s.keys, key)
	}
	return s, nil
}

// Sign returns the webhook-signature header value: "v1,<base64 HMAC-SHA256(key, id.ts.body)>"
// per secret, space separated; ts in unix seconds, as sent in webhook-timestamp.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	timestamp := strconv.FormatInt(ts.Unix(), 10)
	sigs := make([]string, len(s.keys))
	for i, key := range s.keys {
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(sigMAC(key, id, timestamp, body))
	}
	return strings.Join(sigs, " ")
}

// sigMAC is the Standard Webhooks v1 MAC. timestamp is the header's text, not a re-formatted
// number, because that text is what the sender signed.
func sigMAC(key []byte, id, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}
