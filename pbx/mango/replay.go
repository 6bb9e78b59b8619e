package mango

import (
	"fmt"
	"strings"
	"time"
)

// Mango's sign covers the json field, not the URL suffix it is posted to, so a captured body
// can be re-posted under any suffix. Check refuses what cannot be genuine, so that the content
// decides what a message is:
//
//   - A payload that carries the mark of one kind of message (below) is accepted only under
//     that kind's suffix: an /events/call body re-posted to /events/summary, to another
//     /events/* or to a path Mango never posts to is refused. A payload without any mark
//     (sms, a kind Mango adds later) goes on as before and, if it does not map, becomes a
//     pbx.unmapped keyed on its content alone, so re-posts under other paths dedupe.
//   - With a stale_after set on the account, a payload whose timestamp is older than that is
//     refused: past the dedupe window the queue would no longer recognise it as a re-send.
//     Newer timestamps, including ones in the future (Mango documents its epoch seconds as
//     "UTC+3"), pass; a summary, which has no timestamp, is not checked. It is off by
//     default: Mango documents no retry schedule, and a gateway that refused an old but
//     genuine message would lose it (docs/security.md, Replays).
//
// kindMarks are tested in order; the first member present decides. Each is carried by one kind only
// (docs/mango.md, Identifiers and event ids): a recording event also has recording_id, so
// recording_state comes first, and a summary's times before recording_id in case Mango ever adds
// one to it.
var kindMarks = []struct{ member, family string }{
	{"call_state", "events/call"},
	{"recording_state", "events/recording"},
	{"dtmf", "events/dtmf"},
	{"create_time", "events/summary"},
	{"end_time", "events/summary"},
	{"recording_id", "events/record/"}, // record/added and record/tagged carry the same fields
	{"result", "result/"},
	{"request_id", "result/"}, // the stats-ready callback
}

// family is the kind of message a suffix (as Route returns it, or the path when unknown)
// stands for, in kindMarks' terms; "" for one that no mark belongs to.
func family(suffix string) string {
	switch {
	case strings.HasPrefix(suffix, "events/record/"):
		return "events/record/"
	case strings.HasPrefix(suffix, "result/"):
		return "result/"
	}
	for _, m := range kindMarks {
		if m.family == suffix {
			return suffix
		}
	}
	return ""
}

// ErrReplay is what Check's errors wrap.
var ErrReplay = fmt.Errorf("not a message Mango would post here")

// Check reports why an authentic payload posted to suffix cannot be a genuine Mango message
// received at now, or nil; staleAfter > 0 refuses timestamps older than that. A payload that is not
// a JSON object passes: Translate makes it pbx.unmapped.
func Check(suffix string, payload []byte, now time.Time, staleAfter time.Duration) error {
	f, err := decodeObject(payload)
	if err != nil {
		return nil
	}
	return check(suffix, f, now, staleAfter)
}

// check is Check of a payload decoded as f.
func check(suffix string, f fields, now time.Time, staleAfter time.Duration) error {
	for _, m := range kindMarks {
		if !f.has(m.member) {
			continue
		}
		if m.family != family(suffix) {
			return fmt.Errorf("%w: a %s message (it has %s) posted to %s: replayed or misrouted", ErrReplay, strings.TrimSuffix(m.family, "/"), m.member, suffix)
		}
		break
	}
	if staleAfter <= 0 {
		return nil
	}
	if ts := f.time("timestamp"); !ts.IsZero() && ts.Before(now.Add(-staleAfter)) {
		return fmt.Errorf("%w: its timestamp %s is older than stale_after (%s)", ErrReplay, ts.Format(time.RFC3339), staleAfter)
	}
	return nil
}
