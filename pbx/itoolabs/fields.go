// Package itoolabs translates the webhooks of the ITooLabs "REST API for CRM" family of cloud
// PBXs (MegaFon, Gravitel, Dom.ru, MegaPBX; docs/itoolabs.md, The protocol) into canonical
// events, and builds what the gateway sends back: the contact answer, the error bodies the PBX
// expects, and makeCall. Pure Go: no Caddy, no I/O.
package itoolabs

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// Fields is one PBX message, every value a string whatever the wire format.
type Fields map[string]string

// Command is the lower-cased message kind (cmd): event, history, contact, rating.
func (f Fields) Command() string { return strings.ToLower(strings.TrimSpace(f["cmd"])) }

// IsContact reports the synchronous "who is calling?" lookup, which is answered and never queued.
func (f Fields) IsContact() bool { return f.Command() == "contact" }

// Phone is the external party's number as sent.
func (f Fields) Phone() string { return f["phone"] }

// CallID is the PBX's id of the call, shared by all its legs; "" when absent.
func (f Fields) CallID() string { return strings.TrimSpace(f["callid"]) }

// Authenticate compares crm_token with the account's token in constant time. An empty
// configured token never matches, so a missing setting cannot open the door.
func Authenticate(f Fields, wantToken string) bool {
	return pbx.SecretMatches(f["crm_token"], wantToken)
}

// secret reports the fields that never reach raw, logs or ids: crm_token authenticates the
// PBX to us, token the CRM to the PBX (docs/itoolabs.md, Transport and authentication).
func secret(name string) bool { return name == "crm_token" || name == "token" }

// identity serialises parts so that no choice of bytes makes two different lists alike: each
// part is prefixed with its length.
func identity(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	return b.String()
}

// wholeKey identifies a message by all its fields but the secrets, in name order: the key of
// messages without a narrower identity (pbx.unmapped).
func (f Fields) wholeKey() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(f)) {
		if !secret(name) {
			parts = append(parts, name, f[name])
		}
	}
	return identity(parts...)
}
