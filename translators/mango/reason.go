package mango

import (
	"strings"

	"github.com/pbxbridge/pbxbridge/translators"
)

// reasons maps Mango result and disconnect codes (docs/mango.md, Result codes) to the canonical
// vocabulary. A code not listed is read as its class (ofClass: 1193 → 1190 → 1100 → 1000). A code
// of no known class (6xxx fax, nonsense) is "unknown": its meaning is not known, not a failure.
var reasons = map[int64]string{
	1000: translators.ReasonCompleted, // success (also leg 1 of a click-to-call)
	1100: translators.ReasonCompleted,
	1110: translators.ReasonCallerHangup,
	1111: translators.ReasonNoAnswer,
	1120: translators.ReasonCalleeHangup,
	1121: translators.ReasonBusy,
	1122: translators.ReasonRejected,
	1123: translators.ReasonDND,
	// 1124 differs by source (DOC2026: contact-centre DND; Vodovoz: employee unavailable;
	// DOC2017 uses it for a party that rejected). The current document wins.
	1124: translators.ReasonDND,
	1125: translators.ReasonCancelled, // operator stopped the campaign task
	1130: translators.ReasonUnavailable,
	1133: translators.ReasonWrongNumber, // number does not exist
	1134: translators.ReasonFailed,      // too many forwardings
	1135: translators.ReasonBlocked,     // forwarding forbidden
	1140: translators.ReasonBlocked,     // region forbidden
	1150: translators.ReasonBlocked,     // calling-number black/white lists
	1160: translators.ReasonFailed,      // group call failed
	1163: translators.ReasonNoAnswer,    // hold-queue timeout
	1164: translators.ReasonUnavailable, // all operators unavailable
	1170: translators.ReasonCompleted,   // ended as the forwarding scheme says
	1171: translators.ReasonFailed,      // scheme misconfigured
	1180: translators.ReasonCommand,     // 1181: our own call/hangup
	1182: translators.ReasonPickedUpElsewhere,
	1183: translators.ReasonForwarded, // new operator assigned
	1190: translators.ReasonUnavailable,
	1193: translators.ReasonBusy, // busy with auto-reject
	1200: translators.ReasonFailed,
	1300: translators.ReasonCompleted,
	1310: translators.ReasonAnsweringMachine,
	2000: translators.ReasonBilling,
	3000: translators.ReasonFailed, // bad request
	3200: translators.ReasonWrongNumber,
	4000: translators.ReasonFailed,
	4200: translators.ReasonUnavailable,
	4290: translators.ReasonOverload, // HTTP 429
	4500: translators.ReasonBlocked,  // security restrictions
	5000: translators.ReasonFailed,
	5001: translators.ReasonOverload,
	5008: translators.ReasonOverload, // service unavailable: back off
}

// reason maps a code; 0 (absent) has no reason.
func reason(code int64) string {
	if code == 0 {
		return ""
	}
	if r, ok := ofClass(reasons, code); ok {
		return r
	}
	return translators.ReasonUnknown
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
