package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

// Credentials of the benchmark's accounts; the generated Caddyfile carries the same.
const (
	mangoKey      = "bench-api-key-not-secret"
	mangoSalt     = "bench-api-salt-not-secret"
	xvbAccessCode = "10019"
	formType      = "application/x-www-form-urlencoded"
)

// A whole Mango call is 4 messages, a whole XVB call but its contact lookup 3.
const (
	mangoCallLength = 4
	xvbCallLength   = 3
)

// calls is which PBX's calls a workload sends.
type calls string

const (
	bothCalls  calls = "Mango and XVB calls"
	mangoCalls calls = "Mango calls only"
	xvbCalls   calls = "XVB calls only"
)

// length is how many requests one block of the stream has.
func (c calls) length() int {
	switch c {
	case mangoCalls:
		return mangoCallLength
	case xvbCalls:
		return xvbCallLength
	}
	return mangoCallLength + xvbCallLength
}

// sampleStart is the time on the Mango sample calls; Mango ids do not depend on it. It is
// the present: the gateway refuses Mango messages older than its dedupe window.
var sampleStart = time.Now()

// workload is the request stream of a phase. Request n is a unique webhook that the gateway
// turns into exactly one canonical event; with bothCalls every block is one Mango call
// (mango.SampleCall, signed with the account's salt) and one XVB call (xvb.SampleCall:
// INCOMING, ANSWERED with X-XVB-AC, COMPLETED with callid and no recording, which would add
// an event; no contact lookup, which makes none), each from its own phone number, so the
// gateway's per-call lanes and XVB's open-call bucket see real calls. With mangoCalls
// every block is one Mango call (the job the peers do), with xvbCalls one XVB call.
type workload struct {
	run   string // makes the ids of this phase unique
	base  string // the site, http://127.0.0.1:port
	calls calls
}

// request is one webhook as the PBX posts it.
type request struct {
	url   string
	xvbAC string // the X-XVB-AC header, when XVB sends it
	body  string
}

func (w workload) request(n int) request {
	call, step := n/w.calls.length(), n%w.calls.length()
	if w.calls == xvbCalls {
		step += mangoCallLength
	}
	if step < mangoCallLength {
		entry := fmt.Sprintf("%s-m%d", w.run, call)
		m := mango.SampleCall(entry, entry+"-leg", sampleStart)[step]
		return request{url: w.base + "/hooks/mango" + m.Suffix, body: mango.FormBody(mangoKey, mangoSalt, m.JSON)}
	}
	var events []xvb.Message
	for _, m := range xvb.SampleCall(xvbAccessCode, fmt.Sprintf("%s-x%d", w.run, call), fmt.Sprintf("7920%07d", call%10_000_000), xvb.Completed{CallID: true}) {
		if !m.Fields.IsContact() {
			events = append(events, m)
		}
	}
	m := events[step-mangoCallLength]
	return request{url: w.base + "/hooks/xvb", xvbAC: m.AC, body: m.Body()}
}

// eventIDs are the ids the gateway gives request n's events (webhook-id at the CRM),
// translated here as the gateway does; ids depend on the message alone.
func (w workload) eventIDs(n int) []string {
	r := w.request(n)
	var evs []event.Event
	if path, ok := strings.CutPrefix(r.url, w.base+"/hooks/mango/"); ok {
		form, err := mango.ParseForm([]byte(r.body))
		if err != nil {
			panic(err) // the stream is ours: a bug
		}
		evs = mango.Translate(event.Origin{PBX: "mango", Account: "office"}, path, []byte(form.JSON), time.Now())
	} else {
		fields, _, err := xvb.Parse(formType, []byte(r.body))
		if err != nil {
			panic(err)
		}
		evs = xvb.Translate(event.Origin{PBX: "xvb", Account: "main"}, fields, xvb.Correlation{}, time.Now())
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}
