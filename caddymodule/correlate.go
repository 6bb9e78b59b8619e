package caddymodule

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/translators"
	"github.com/pbxbridge/pbxbridge/translators/xvb"
)

// correlate finds the call of an XVB message and what its earlier messages said. XVB's
// COMPLETED may come without callid (the vendor's own example has none), type or ext: it is
// joined to the call the same phone number opened on the same account (weak), or else given a
// stable id derived from the message, and takes type and ext from the call it closes.
// INCOMING writes the call's number, type and ext; ANSWERED writes its agent, one write with
// no read, as the agent's audio waits for the answer.
func (h *Webhook) correlate(ctx context.Context, acc *account, f xvb.Fields) (xvb.Correlation, error) {
	event, id := f.Event(), f.CallID()
	switch {
	case f.Command() != "event":
		return xvb.Correlation{}, nil
	case event == "INCOMING" || event == "ANSWERED":
		if id == "" {
			return xvb.Correlation{}, nil
		}
	case event != "COMPLETED":
		return xvb.Correlation{}, nil
	}
	eng := h.app.currentEngine()
	if eng == nil || eng.Calls() == nil {
		return xvb.Correlation{}, errors.New("queue not started yet")
	}
	calls := eng.Calls()
	phone := translators.Number(f.Phone(), acc.source.Region)
	switch event {
	case "INCOMING":
		if phone == "" {
			return xvb.Correlation{}, nil
		}
		return xvb.Correlation{}, calls.Open(ctx, acc.name, phone, delivery.OpenCall{ID: id, Type: f["type"], Ext: f["ext"]})
	case "ANSWERED":
		if f["ext"] == "" {
			return xvb.Correlation{}, nil
		}
		// The call.answered is what matters, and the agent waits: a failure here costs only the
		// agent's name on a COMPLETED that leaves ext out.
		if err := calls.Answer(ctx, acc.name, id, f["ext"]); err != nil {
			h.logger.Warn("could not note who answered; a COMPLETED without ext will not name the agent",
				zap.String("account", acc.name), zap.Error(err))
		}
		return xvb.Correlation{}, nil
	}
	open, err := calls.Close(ctx, acc.name, phone, id)
	if err != nil {
		return xvb.Correlation{}, err
	}
	corr := xvb.Correlation{CallID: open.ID, Type: open.Type, Ext: open.Ext, Agent: open.Agent}
	switch {
	case id != "": // the message names its call
		corr.CallID = ""
	case open.ID != "":
		corr.How = xvb.CorrelationWeak
	default:
		corr.CallID, corr.How = xvb.DerivedCallID(acc.accessCode, f), xvb.CorrelationDerived
	}
	return corr, nil
}
