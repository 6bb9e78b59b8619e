package pbx

import (
	"net/http"
	"strings"
	"unicode"

	"github.com/pbxbridge/pbxbridge/event"
)

// statuses map the status words of the ITooLabs "REST API for CRM" vocabulary, which XVB
// borrowed (docs/itoolabs.md, Status values; docs/xvb.md, Messages), lower-cased, to a reason;
// the result follows from it by event.CallResult, the rule every PBX shares.
var statuses = map[string]string{
	"success":      event.ReasonCompleted,
	"missed":       event.ReasonNoAnswer,
	"cancel":       event.ReasonCallerHangup,
	"busy":         event.ReasonBusy,
	"notavailable": event.ReasonUnavailable,
	"notallowed":   event.ReasonBlocked,
	"notfound":     event.ReasonWrongNumber,
	"callaerror":   event.ReasonFailed,
}

// CallStatus maps a closing record's status case-insensitively. Success is answered unless
// the call lasted 0 s (then nobody talked: the rule docs/events.md sets for Mango's talk_time
// 0). An unknown status has the reason unknown, an absent one none, and both are missed: never
// claim a conversation we cannot vouch for, and "missed" makes the CRM follow the caller up,
// the cheap mistake. The event's raw keeps the status as sent.
func CallStatus(status string, zeroDuration bool, direction string) (result, reason string) {
	status = strings.ToLower(strings.TrimSpace(status))
	reason, known := statuses[status]
	if !known && status != "" {
		reason = event.ReasonUnknown
	}
	return event.CallResult(reason == event.ReasonCompleted && !zeroDuration, reason, direction), reason
}

// CallAnswerStatus is the HTTP status with which the gateway answers the CRM for a PBX's
// answer to a click-to-call: 200 when accepted; 429 and 503 (try again later) pass through;
// any other refusal is the PBX's, not the CRM's, so 502.
func CallAnswerStatus(httpStatus int, accepted bool) int {
	switch {
	case accepted:
		return http.StatusOK
	case httpStatus == http.StatusTooManyRequests, httpStatus == http.StatusServiceUnavailable:
		return httpStatus
	}
	return http.StatusBadGateway
}

// MakeCallAnswer is the CRM's answer for a PBX's answer to a click-to-call (XVB and ITooLabs
// makeCall): accepted, or refused with refusal as the error text. "Too many" also pauses the
// account (Answer.Busy).
func MakeCallAnswer(httpStatus int, accepted bool, refusal string) Answer {
	ans := Answer{Status: CallAnswerStatus(httpStatus, accepted), Outcome: "accepted", Body: AnswerBody{Status: "accepted"}}
	if accepted {
		return ans
	}
	ans.Outcome, ans.Body.Status, ans.Body.PBXStatus, ans.Body.Error = "refused", "refused", httpStatus, refusal
	if ans.Status == http.StatusTooManyRequests {
		ans.Outcome = "rate_limited"
	}
	ans.Busy()
	return ans
}

// maxErrorText bounds a PBX's error text passed on to the CRM and the log.
const maxErrorText = 200

// ErrorText is the first line of a PBX's error text, printable characters only, at most
// maxErrorText bytes of it.
func ErrorText(s string) string {
	s = strings.ToValidUTF8(s, "")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.TrimSpace(s))
	if len(s) > maxErrorText {
		s = strings.ToValidUTF8(s[:maxErrorText], "") // drops a rune cut in half
	}
	return strings.TrimSpace(s)
}
