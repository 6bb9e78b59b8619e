package event

import "testing"

func TestCallResult(t *testing.T) {
	for _, tt := range []struct {
		answered          bool
		reason, direction string
		want              string
	}{
		{true, ReasonBusy, DirectionInbound, ResultAnswered},
		{false, ReasonBusy, DirectionOutbound, ResultBusy},
		{false, ReasonCallerHangup, DirectionInbound, ResultMissed},
		{false, ReasonCallerHangup, DirectionUnknown, ResultMissed},
		{false, ReasonCallerHangup, DirectionOutbound, ResultCancelled},
		{false, ReasonCallerHangup, DirectionInternal, ResultCancelled},
		{false, ReasonCancelled, DirectionInbound, ResultMissed},
		{false, ReasonCommand, DirectionOutbound, ResultCancelled},
		{false, ReasonWrongNumber, DirectionOutbound, ResultFailed},
		{false, ReasonBilling, DirectionInbound, ResultFailed},
		{false, ReasonUnavailable, DirectionOutbound, ResultMissed},
		{false, ReasonNoAnswer, DirectionInbound, ResultMissed},
		{false, ReasonCompleted, DirectionInbound, ResultMissed}, // ended without anyone talking
		{false, "", DirectionUnknown, ResultMissed},
	} {
		if got := CallResult(tt.answered, tt.reason, tt.direction); got != tt.want {
			t.Errorf("CallResult(%v, %q, %q) = %q, want %q", tt.answered, tt.reason, tt.direction, got, tt.want)
		}
	}
}
