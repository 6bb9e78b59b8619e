package mango

import (
	"strings"

	"github.com/pbxbridge/pbxbridge/event"
)

// reasons maps Mango result and disconnect codes (docs/mango.md, Result codes) to the canonical
// vocabulary. A code not listed is read as its class (ofClass: 1193 → 1190 → 1100 → 1000). A code
// of no known class (6xxx fax, nonsense) is "unknown": its meaning is not known, not a failure.
var reasons = map[int64]string{
	1000: event.ReasonCompleted, // success (also leg 1 of a click-to-call)
	1100: event.ReasonCompleted,
	1110: event.ReasonCallerHangup,
	1111: event.ReasonNoAnswer,
	1120: event.ReasonCalleeHangup,
	1121: event.ReasonBusy,
	1122: event.ReasonRejected,
	1123: event.ReasonDND,
	// 1124 differs by source (DOC2026: contact-centre DND; Vodovoz: employee unavailable;
	// DOC2017 uses it for a party that rejected). The current document wins.
	1124: event.ReasonDND,
	1125: event.ReasonCancelled, // operator stopped the campaign task
	1130: event.ReasonUnavailable,
	1133: event.ReasonWrongNumber, // number does not exist
	1134: event.ReasonFailed,      // too many forwardings
	1135: event.ReasonBlocked,     // forwarding forbidden
	1140: event.ReasonBlocked,     // region forbidden
	1150: event.ReasonBlocked,     // calling-number black/white lists
	1160: event.ReasonFailed,      // group call failed
	1163: event.ReasonNoAnswer,    // hold-queue timeout
	1164: event.ReasonUnavailable, // all operators unavailable
	1170: event.ReasonCompleted,   // ended as the forwarding scheme says
	1171: event.ReasonFailed,      // scheme misconfigured
	1180: event.ReasonCommand,     // 1181: our own call/hangup
	1182: event.ReasonPickedUpElsewhere,
	1183: event.ReasonForwarded, // new operator assigned
	1190: event.ReasonUnavailable,
	1193: event.ReasonBusy, // busy with auto-reject
	1200: event.ReasonFailed,
	1300: event.ReasonCompleted,
	1310: event.ReasonAnsweringMachine,
	2000: event.ReasonBilling,
	3000: event.ReasonFailed, // bad request
	3200: event.ReasonWrongNumber,
	4000: event.ReasonFailed,
	4200: event.ReasonUnavailable,
	4290: event.ReasonOverload, // HTTP 429
	4500: event.ReasonBlocked,  // security restrictions
	5000: event.ReasonFailed,
	5001: event.ReasonOverload,
	5008: event.ReasonOverload, // service unavailable: back off
}

// reason maps a code; 0 (absent) has no reason.
func reason(code int64) string {
	if code == 0 {
		return ""
	}
	if r, ok := ofClass(reasons, code); ok {
		return r
	}
	return event.ReasonUnknown
}

// ofClass looks a code up as Mango tells receivers to read one they do not know: the code,
// then its class with the last one, two and three digits zeroed.
func ofClass[V any](table map[int64]V, code int64) (V, bool) {
	for d := int64(1); d <= 1000; d *= 10 {
		if v, ok := table[code/d*d]; ok {
			return v, true
		}
	}
	var zero V
	return zero, false
}

// initiators maps callback_initiator, folded by initiatorKey, to the canonical vocabulary.
var initiators = map[string]string{
	"cc":                    "contact_centre",
	"api":                   "api",
	"web":                   "web",
	"obdial":                "campaign",
	"callbackwidget":        "callback_widget",
	"missgroupcallcallback": "missed_group_callback",
	"missinivrcallcallback": "missed_ivr_callback",
}

// lookalikes folds the Cyrillic letters that look Latin: Mango's own documents write "СС"
// and "MissGroupСallCallback" with Cyrillic С (docs/mango.md, Lenient fields).
var lookalikes = strings.NewReplacer(
	"А", "A", "В", "B", "С", "C", "Е", "E", "Н", "H", "К", "K", "М", "M", "О", "O", "Р", "P",
	"Т", "T", "Х", "X", "а", "a", "е", "e", "о", "o", "р", "p", "с", "c", "у", "y", "х", "x",
)

// initiator maps callback_initiator: "" when absent, "other" when not known.
func initiator(raw string) string {
	if raw = strings.TrimSpace(raw); raw == "" {
		return ""
	}
	if v, ok := initiators[strings.ToLower(lookalikes.Replace(raw))]; ok {
		return v
	}
	return "other"
}
