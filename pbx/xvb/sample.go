package xvb

import "net/url"

// Message is one webhook of a sample call as XVB posts it.
type Message struct {
	Name   string // "INCOMING", "contact", "ANSWERED", "COMPLETED"
	Fields Fields // access_code included
	AC     string // the X-XVB-AC header, "" where XVB sends none
}

// Body is the message in XVB's default data format, html-form.
func (m Message) Body() string {
	v := url.Values{}
	for name, value := range m.Fields {
		v.Set(name, value)
	}
	return v.Encode()
}

// Completed says what a sample call's COMPLETED carries besides its status and duration.
type Completed struct {
	// CallID: XVB's own example has none, and the gateway joins it to the call by its phone
	// number (correlation weak, docs/xvb.md); a load of many calls sends it to be sure of
	// each call's ids, which come from the message alone.
	CallID bool
	// Recording is a record_link, which adds a recording.ready to the call.completed.
	Recording bool
}

// SampleCall is one realistic answered inbound call from phone to account accessCode, as XVB
// posts it: INCOMING, the contact lookup while the caller waits, ANSWERED by ext 100 with the
// X-XVB-AC header, and COMPLETED, like XVB's example without type and ext. `pbxbridge
// simulate`, the tests' load and the benchmark play it.
func SampleCall(accessCode, callID, phone string, completed Completed) []Message {
	fields := func(kv ...string) Fields {
		f := Fields{"access_code": accessCode, "phone": phone}
		for i := 0; i+1 < len(kv); i += 2 {
			f[kv[i]] = kv[i+1]
		}
		return f
	}
	end := fields("cmd", "event", "event", "COMPLETED", "status", "Success", "duration", "16")
	if completed.CallID {
		end["callid"] = callID
	}
	if completed.Recording {
		end["record_link"] = "https://pbx.example.net/ui/msg_download/120/" + accessCode + "/" +
			url.PathEscape(callID) + ".q722"
	}
	return []Message{
		{Name: "INCOMING", Fields: fields("cmd", "event", "callid", callID, "type", "in", "event", "INCOMING", "ext", "")},
		{Name: "contact", Fields: fields("cmd", "contact")},
		{Name: "ANSWERED", Fields: fields("cmd", "event", "callid", callID, "type", "in", "event", "ANSWERED", "ext", "100"), AC: accessCode},
		{Name: "COMPLETED", Fields: end},
	}
}
