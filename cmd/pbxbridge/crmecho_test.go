package main

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/pbxbridge/pbxbridge/delivery"
)

// crm-echo accepts what a target's Signer signs, by either secret while rotating, and
// nothing else.
func TestCRMEchoVerify(t *testing.T) {
	const (
		oldSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		newSecret   = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
		otherSecret = "whsec_b3RoZXItc2VjcmV0LW5vdC10aGUtdGFyZ2V0cw=="
		id          = "5f0c9a7e1b3d4c2a8e6f0b1d3c5a7e9f"
	)
	body := []byte(`{"specversion":"1.0","type":"call.completed"}`)
	now := time.Now()
	for _, tt := range []struct {
		name            string
		signedBy, check []string
		body            string
		at              time.Time
		ok              bool
	}{
		{"one secret", []string{oldSecret}, []string{oldSecret}, string(body), now, true},
		{"rotating, checked with the old", []string{oldSecret, newSecret}, []string{oldSecret}, string(body), now, true},
		{"rotating, checked with the new", []string{oldSecret, newSecret}, []string{otherSecret, newSecret}, string(body), now, true},
		{"another secret", []string{oldSecret}, []string{otherSecret}, string(body), now, false},
		{"tampered body", []string{oldSecret}, []string{oldSecret}, string(body) + " ", now, false},
		{"stale timestamp", []string{oldSecret}, []string{oldSecret}, string(body), now.Add(-6 * time.Minute), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signer, err := delivery.NewSigner(tt.signedBy)
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			h.Set("webhook-id", id)
			h.Set("webhook-timestamp", strconv.FormatInt(tt.at.Unix(), 10))
			h.Set("webhook-signature", signer.Sign(id, tt.at, body))
			webhooks := make([]*standardwebhooks.Webhook, len(tt.check))
			for i, secret := range tt.check {
				if webhooks[i], err = standardwebhooks.NewWebhook(secret); err != nil {
					t.Fatal(err)
				}
			}
			if err := verify(webhooks, []byte(tt.body), h); (err == nil) != tt.ok {
				t.Errorf("verify = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
