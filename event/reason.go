package event

// Reasons say why a leg or call ended (or how a command went), in words a CRM can act on
// without knowing the PBX. Translators map PBX codes into this small vocabulary and keep the
// PBX's own number in Data.ReasonCode; schema/call-event.v1.json enumerates the same list.
const (
	ReasonCompleted         = "completed"           // normal end, or a command that succeeded
	ReasonCallerHangup      = "caller_hangup"       // the calling party ended it
	ReasonCalleeHangup      = "callee_hangup"       // the called party ended it
	ReasonNoAnswer          = "no_answer"           // rang until a timeout
	ReasonBusy              = "busy"                // the called party was busy
	ReasonRejected          = "rejected"            // the called party declined
	ReasonDND               = "dnd"                 // do-not-disturb
	ReasonUnavailable       = "unavailable"         // the party could not be reached
	ReasonWrongNumber       = "wrong_number"        // the number does not exist or is malformed
	ReasonBlocked           = "blocked"             // forbidden by a list, region or security rule
	ReasonForwarded         = "forwarded"           // the call moved to another party
	ReasonTransferred       = "transferred"         // a party transferred the call away
	ReasonPickedUpElsewhere = "picked_up_elsewhere" // a colleague answered (group call)
	ReasonCommand           = "command"             // ended by a user or API command
	ReasonCancelled         = "cancelled"           // a task or attempt was stopped on purpose
	ReasonAnsweringMachine  = "answering_machine"   // an answering machine picked up
	ReasonBilling           = "billing"             // account blocked, funds or limits
	ReasonOverload          = "overload"            // the PBX is overloaded or rate limiting
	ReasonFailed            = "failed"              // a technical or request error
	ReasonUnknown           = "unknown"             // a code of no known class
)

// Reasons lists the vocabulary, in the schema's order.
var Reasons = []string{
	ReasonCompleted, ReasonCallerHangup, ReasonCalleeHangup, ReasonNoAnswer, ReasonBusy,
	ReasonRejected, ReasonDND, ReasonUnavailable, ReasonWrongNumber, ReasonBlocked,
	ReasonForwarded, ReasonTransferred, ReasonPickedUpElsewhere, ReasonCommand, ReasonCancelled,
	ReasonAnsweringMachine, ReasonBilling, ReasonOverload, ReasonFailed, ReasonUnknown,
}

// CallResult is the outcome of a whole call, the one rule of every PBX: answered when the PBX
// says someone talked, else by the final reason:
//
//	busy                                              busy
//	caller_hangup, cancelled, command                 cancelled when our side placed the call
//	                                                  (outbound, internal), else missed
//	failed, billing, overload, wrong_number, blocked  failed (could not be set up)
//	anything else, or no reason                       missed
//
// An inbound caller who hangs up before anyone answers is a missed call: that is the call a
// CRM must return. So is a caller of a call whose direction is unknown: calling back someone
// who gave up is the cheap mistake, never returning a customer's call the dear one.
func CallResult(answered bool, reason, direction string) string {
	if answered {
		return ResultAnswered
	}
	switch reason {
	case ReasonBusy:
		return ResultBusy
	case ReasonCallerHangup, ReasonCancelled, ReasonCommand:
		if direction == DirectionOutbound || direction == DirectionInternal {
			return ResultCancelled
		}
		return ResultMissed
	case ReasonFailed, ReasonBilling, ReasonOverload, ReasonWrongNumber, ReasonBlocked:
		return ResultFailed
	}
	return ResultMissed
}
