package delivery

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sigSecretPrefix marks a Standard Webhooks secret; the rest is the key in standard base64.
const sigSecretPrefix = "whsec_"

// Signer signs deliveries with Standard Webhooks (https://www.standardwebhooks.com/) secrets.
// Secrets are "whsec_<base64>"; two secrets while rotating → two signatures, space separated.
// It is safe for concurrent use.
type Signer struct {
	// macs are, per secret, HMAC-SHA256 states keyed with it: Reset returns one to the keyed
	// state, where hmac.New would allocate and hash the key's pads again for every delivery.
	macs []*sync.Pool
}

// NewSigner decodes the secrets. Errors name the secret by position only: config errors are
// logged, and the secret must not be.
func NewSigner(secrets []string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no webhook secret")
	}
	s := &Signer{macs: make([]*sync.Pool, 0, len(secrets))}
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
		s.macs = append(s.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	return s, nil
}

// Sign returns the webhook-signature header value: "v1,<base64 HMAC-SHA256(key, id.ts.body)>"
// per secret, space separated; ts in unix seconds, as sent in webhook-timestamp.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	// The MAC is over the timestamp's text, as webhook-timestamp sends it.
	signed := strconv.AppendInt(append([]byte(id), '.'), ts.Unix(), 10)
	signed = append(signed, '.')
	const sigLen = len("v1,") + (sha256.Size+2)/3*4
	var sig strings.Builder
	sig.Grow(len(s.macs) * (sigLen + 1))
	var sum [sha256.Size]byte
	var encoded [sigLen - len("v1,")]byte
	for i, macs := range s.macs {
		m := macs.Get().(hash.Hash)
		m.Reset()
		m.Write(signed)
		m.Write(body)
		base64.StdEncoding.Encode(encoded[:], m.Sum(sum[:0]))
		macs.Put(m)
		if i > 0 {
			sig.WriteByte(' ')
		}
		sig.WriteString("v1,")
		sig.Write(encoded[:])
	}
	return sig.String()
}
