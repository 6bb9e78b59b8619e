// Package xvb translates XVB PBX "CommonCRM" webhooks (docs/xvb.md, The protocol) into canonical
// events and builds the messages the gateway sends back: the contact-lookup answer and makeCall.
package xvb

import (
	"crypto/subtle"
	"slices"
	"strconv"
	"strings"
)

// Fields is one XVB message, normalised to strings whatever the wire format.
type Fields map[string]string

// Command is the message kind (cmd).
func (f Fields) Command() string { return f["cmd"] }

// IsContact reports a synchronous contact lookup, which is answered and never queued.
func (f Fields) IsContact() bool { return strings.EqualFold(f.Command(), "contact") }

// Phone is the external party's number as sent.
func (f Fields) Phone() string { return f["phone"] }

// CallID is the PBX's call id, "" when the message carries none (COMPLETED may not).
func (f Fields) CallID() string { return f["callid"] }

// Event is the upper-cased event name of a cmd=event message.
func (f Fields) Event() string { return strings.ToUpper(strings.TrimSpace(f["event"])) }

// Authenticate checks the tenant binding: access_code (and the X-XVB-AC header value when
// non-empty: they must agree) against the configured code, constant time. An empty configured
// code never authenticates, so a missing setting cannot open the door.
func Authenticate(f Fields, headerAC, wantAccessCode string) bool {
	if wantAccessCode == "" {
		return false
	}
	ok := subtle.ConstantTimeCompare([]byte(f["access_code"]), []byte(wantAccessCode))
	if headerAC != "" {
		ok &= subtle.ConstantTimeCompare([]byte(headerAC), []byte(wantAccessCode))
	}
	return ok == 1
}

// secret reports fields that must never reach raw, logs or ids: XVB's CRM → PBX token, and the
// webhook URL's key in case an operator put it into the body.
func secret(name string) bool { return name == "token" || name == "key" }

// key is a canonical serialisation of the message: every field but the secrets, sorted by
// name, each name and value length-prefixed so no choice of bytes can make two different field
// sets serialise alike. The order XVB sends fields in (a Perl hash, arbitrary) does not matter.
func (f Fields) key() string {
	names, size := make([]string, 0, len(f)), 0
	for name, value := range f {
		if !secret(name) {
			names = append(names, name)
			size += len(name) + len(value) + 2*len("nn:") // the prefixes of names and values under 100 bytes
		}
	}
	slices.Sort(names)
	var b strings.Builder
	b.Grow(size)
	for _, name := range names {
		for _, s := range [...]string{name, f[name]} {
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte(':')
			b.WriteString(s)
		}
	}
	return b.String()
}
