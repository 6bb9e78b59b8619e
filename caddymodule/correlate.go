package caddymodule

import (
	"context"
	"errors"

	"github.com/pbxbridge/pbxbridge/translators"
	"github.com/pbxbridge/pbxbridge/translators/xvb"
)

// correlate finds the call of an XVB message. XVB's COMPLETED may come without callid (the
// vendor's own example has none): it is joined to the call the same phone number opened on the
// same account (weak), or else given a stable id derived from the message. Only INCOMING
// writes to the bucket, so ANSWERED, on the agent's audio path, costs no extra write.
func (h *Webhook) correlate(ctx context.Context, acc *account, f xvb.Fields) (xvb.Correlation, error) {
	event := f.Event()
	if f.Command() != "event" || (event != "INCOMING" && event != "COMPLETED") {
		return xvb.Correlation{}, nil
	}
	eng := h.app.readyEngine(ctx)
	if eng == nil || eng.Calls() == nil {
		return xvb.Correlation{}, errors.New("queue not started yet")
	}
	if err := eng.Writable(); err != nil {
		return xvb.Correlation{}, err
	}
	calls := eng.Calls()
	phone := translators.Number(f.Phone(), acc.source.Region)
	if id := f.CallID(); id != "" {
		if phone == "" {
			return xvb.Correlation{}, nil
		}
		if event == "INCOMING" {
			return xvb.Correlation{}, calls.Open(ctx, acc.name, phone, id)
		}
		return xvb.Correlation{}, calls.Close(ctx, acc.name, phone, id)
	}
	if event == "COMPLETED" && phone != "" {
		id, ok, err := calls.Find(ctx, acc.name, phone)
		if err != nil {
			return xvb.Correlation{}, err
		}
		if ok {
			return xvb.Correlation{CallID: id, How: xvb.CorrelationWeak}, calls.Close(ctx, acc.name, phone, id)
		}
	}
	return xvb.Correlation{CallID: xvb.DerivedCallID(acc.accessCode, f), How: xvb.CorrelationDerived}, nil
}
