package itoolabs

import (
	"net/url"
	"time"
)

// Message is one webhook of a sample call: what it is, for people, and its form body.
type Message struct {
	Name string // "contact", "INCOMING", …, "history"
	Body string // application/x-www-form-urlencoded, crm_token included
}

// SampleCall is one realistic answered inbound call as a MegaFon-style PBX posts it, signed with
// token: the contact lookup, the agent's leg INCOMING → ACCEPTED → COMPLETED, then the history
// with a recording link. The call starts at start and lasts 42 s. `pbxbridge simulate` and the
// tests play it.
func SampleCall(token, callID string, start time.Time) []Message {
	const phone, diversion, user, ext = "79161234567", "74951234567", "ivanov@example.megapbx.ru", "701"
	form := func(kv ...string) string {
		v := url.Values{"crm_token": {token}, "callid": {callID}, "phone": {phone}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	leg := func(typ string) Message {
		return Message{typ, form("cmd", "event", "type", typ, "direction", "in", "diversion", diversion,
			"user", user, "ext", ext, "groupRealName", "Отдел продаж")}
	}
	return []Message{
		{"contact", form("cmd", "contact")},
		leg("INCOMING"),
		leg("ACCEPTED"),
		leg("COMPLETED"),
		{"history", form("cmd", "history", "type", "in", "user", user, "ext", ext, "diversion", diversion,
			"start", start.UTC().Format(startLayout), "duration", "42", "status", "Success",
			"link", "https://records.example.megapbx.ru/"+url.PathEscape(callID)+".mp3")},
	}
}
