package mango

import "strings"

// eventKinds are the /events/* suffixes Mango sends (docs/mango.md, Webhooks).
var eventKinds = []string{
	"events/call", "events/summary", "events/recording", "events/record/added",
	"events/record/tagged", "events/dtmf", "events/sms",
}

// Route finds the message kind from the URL path, whatever base URL (and /vpbx prefix) comes
// before it: one of eventKinds, "result/<command>" (the command may have slashes, as in
// result/call/hangup) or "ping". For any other path ok is false and suffix is the path's tail
// from its last events/ segment (or the whole path), for the error of a pbx.unmapped event.
func Route(urlPath string) (suffix string, ok bool) {
	p := "/" + strings.Trim(urlPath, "/")
	for _, k := range eventKinds {
		if strings.HasSuffix(p, "/"+k) {
			return k, true
		}
	}
	if strings.HasSuffix(p, "/ping") {
		return "ping", true
	}
	events, result := strings.LastIndex(p, "/events/"), strings.LastIndex(p, "/result/")
	if result >= 0 && result > events {
		return p[result+1:], true
	}
	if events >= 0 {
		return p[events+1:], false
	}
	return p[1:], false
}

// IsPing reports whether suffix is the cabinet's connection test, which is answered 200 and
// queues nothing.
func IsPing(suffix string) bool { return suffix == "ping" }
