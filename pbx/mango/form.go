package mango

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Form is a Mango webhook body: the three form fields.
type Form struct{ Key, Sign, JSON string }

// ParseForm parses an application/x-www-form-urlencoded body strictly: a bad escape, a `;`
// separator, a missing `json` field or a repeated Mango field is an error. JSON is the field's
// value after URL-decoding, byte for byte, because the signature covers exactly those bytes.
func ParseForm(body []byte) (Form, error) {
	q, err := url.ParseQuery(string(body))
	if err != nil {
		return Form{}, fmt.Errorf("mango: form body: %w", err)
	}
	// Two values would let the signature cover one and the translator read the other.
	for _, k := range []string{"vpbx_api_key", "sign", "json"} {
		if n := len(q[k]); n > 1 {
			return Form{}, fmt.Errorf("mango: form field %s given %d times", k, n)
		}
	}
	js, ok := q["json"]
	if !ok {
		return Form{}, errors.New("mango: form has no json field")
	}
	return Form{Key: q.Get("vpbx_api_key"), Sign: q.Get("sign"), JSON: js[0]}, nil
}

// Sign is Mango's signature: lowercase hex SHA-256 of key, json and salt concatenated (plain
// SHA-256, not HMAC; docs/mango.md, Signature).
func Sign(apiKey, json, apiSalt string) string {
	sum := sha256.Sum256([]byte(apiKey + json + apiSalt))
	return hex.EncodeToString(sum[:])
}

// Verify reports whether f carries the account's key and a valid sign. Both comparisons run
// in constant time and are always both made; the sign is compared case-insensitively. An
// account without key or salt verifies nothing: a sign without a secret proves nothing.
func Verify(f Form, apiKey, apiSalt string) bool {
	if apiKey == "" || apiSalt == "" {
		return false
	}
	key := subtle.ConstantTimeCompare([]byte(f.Key), []byte(apiKey))
	sign := subtle.ConstantTimeCompare([]byte(strings.ToLower(f.Sign)), []byte(Sign(apiKey, f.JSON, apiSalt)))
	return key&sign == 1
}
