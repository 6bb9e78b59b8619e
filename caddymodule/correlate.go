package caddymodule

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/delivery"
	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx/xvb"
)

// correlate finds the call of an XVB message and what its earlier messages said. XVB's
// COMPLETED may come without callid (the vendor's own example has none), type or ext: it is
// joined to the call the same phone number opened on the same account (weak), or else given a
// stable id derived from the message, and takes type and ext from the call it closes (and the
// agent from noteAnswer). INCOMING writes the call's number, type and ext.
func (h *Webhook) correlate(ctx context.Context, acc *account, f xvb.Fields) (xvb.Correlation, error) {
	name, id := f.Event(), f.CallID()
	if f.Command() != "event" || (name != "INCOMING" && name != "COMPLETED") || (name == "INCOMING" && id == "") {
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
	phone := event.Number(f.Phone(), acc.source.Region)
	if name == "INCOMING" {
		if phone == "" {
			return xvb.Correlation{}, nil
		}
		return xvb.Correlation{}, calls.Open(ctx, acc.name, phone, delivery.OpenCall{ID: id, Type: f["type"], Ext: f["ext"]})
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

// noteAnswer writes who answered an XVB call (ANSWERED's callid and ext) for the call's
// COMPLETED, which may leave ext out: one write, no read. It writes while the handler makes
// the call.answered durable, so the agent's audio waits for the slower of the two, not for
// both; the returned func waits for the write. A failure is logged and costs only the agent's
// name on such a COMPLETED: the call.answered is what matters.
func (h *Webhook) noteAnswer(ctx context.Context, acc *account, f xvb.Fields) (wait func()) {
	id, ext := f.CallID(), f["ext"]
	eng := h.app.currentEngine()
	// A store that cannot write would hold the webhook's refusal for the whole wait.
	if f.Command() != "event" || f.Event() != "ANSWERED" || id == "" || ext == "" || eng == nil || eng.Calls() == nil || eng.Writable() != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), durableWithin)
		defer cancel()
		if err := eng.Calls().Answer(ctx, acc.name, id, ext); err != nil {
			h.logger.Warn("could not note who answered; a COMPLETED without ext will not name the agent",
				zap.String("account", acc.name), zap.Error(err))
		}
	}()
	return func() { <-done }
}
