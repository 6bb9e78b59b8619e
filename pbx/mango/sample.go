package mango

import (
	"fmt"
	"net/url"
	"time"
)

// Message is one webhook as Mango posts it: the suffix it appends to the base URL and the
// value of the json field.
type Message struct {
	Name   string // what it is, for people: "Appeared", "summary", …
	Suffix string
	JSON   string
}

// SampleCall is one realistic answered inbound call, in Mango's compact wire format: the
// employee's leg Appeared → Connected → Disconnected (caller hung up), then the summary.
// `pbxbridge simulate`, the tests and the benchmark play it.
func SampleCall(entryID, legID string, start time.Time) []Message {
	t := start.Unix()
	leg := func(seq int, state, extra string) string {
		return fmt.Sprintf(`{"entry_id":%q,"call_id":%q,"timestamp":%d,"seq":%d,"call_state":%q,"location":"abonent",`+
			`"from":{"number":"79123456789"},"to":{"extension":"101","number":"sip:101@vpbx400000000.mangosip.ru",`+
			`"line_number":"74951234567","acd_group":"303"}%s}`, entryID, legID, t+int64(seq), seq, state, extra)
	}
	return []Message{
		{"Appeared", "/events/call", leg(1, "Appeared", "")},
		{"Connected", "/events/call", leg(2, "Connected", "")},
		{"Disconnected", "/events/call", leg(3, "Disconnected", `,"disconnect_reason":1110`)},
		{"summary", "/events/summary", fmt.Sprintf(`{"entry_id":%q,"call_direction":1,"from":{"number":"79123456789"},`+
			`"to":{"extension":"101","number":"sip:101@vpbx400000000.mangosip.ru"},"line_number":"74951234567",`+
			`"create_time":%d,"forward_time":%d,"talk_time":%d,"end_time":%d,"entry_result":1,"disconnect_reason":1110}`,
			entryID, t, t, t+2, t+4)},
	}
}

// FormBody is the signed form body Mango posts for json.
func FormBody(apiKey, apiSalt, json string) string {
	return url.Values{"vpbx_api_key": {apiKey}, "sign": {Sign(apiKey, json, apiSalt)}, "json": {json}}.Encode()
}
