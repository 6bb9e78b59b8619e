package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// callTTL is how long an open call is remembered: a call still going after this long is
// joined by a derived id instead.
const callTTL = 6 * time.Hour

// Calls is the open-call bucket (it is a pbx.Calls) (a JetStream key-value store with a TTL) that joins a PBX
// message without a call id (XVB's COMPLETED) to the call that the same phone number opened on
// the same account, and remembers what the call's earlier messages said that its last one may
// not say again (XVB's COMPLETED may come without type or ext). It lives before the queue so
// the PBX packages stay pure.
type Calls struct{ kv jetstream.KeyValue }

// OpenCall is what the bucket knows of a call.
type OpenCall = pbx.OpenCall

// Calls returns the open-call bucket, or nil before Apply has created it.
func (e *Engine) Calls() *Calls { return e.calls.Load() }

// Keys name no phone number (bucket keys are visible to anyone with NATS access), and no
// call id, which may hold characters a key cannot.
func phoneKey(account, phone string) string { return account + "." + digest(phone) }

func answerKey(account, callID string) string { return account + ".answered." + digest(callID) }

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// Open records call as the open call of phone on account, replacing any earlier one.
func (c *Calls) Open(ctx context.Context, account, phone string, call OpenCall) error {
	v, err := json.Marshal(call)
	if err != nil {
		return err
	}
	_, err = c.kv.Put(ctx, phoneKey(account, phone), v)
	return err
}

// Answer records that agent answered callID: one write, no read, as the agent's audio waits.
func (c *Calls) Answer(ctx context.Context, account, callID, agent string) error {
	_, err := c.kv.Put(ctx, answerKey(account, callID), []byte(agent))
	return err
}

// Close forgets the open call of phone on account, if it is callID's (or any, with callID
// ""), and returns what is known of the call it closes. ID is "" when callID is "" and phone
// has no open call. The answering agent is kept until the TTL: a re-sent last message gets it
// again.
func (c *Calls) Close(ctx context.Context, account, phone, callID string) (OpenCall, error) {
	var open OpenCall
	if phone != "" {
		entry, err := c.kv.Get(ctx, phoneKey(account, phone))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return OpenCall{}, err
		default:
			if json.Unmarshal(entry.Value(), &open) != nil || open.ID == "" {
				open = OpenCall{ID: string(entry.Value())} // written by a version that kept the id alone
			}
			if callID != "" && open.ID != callID {
				open = OpenCall{} // the number has moved on to another call
				break
			}
			err = c.kv.Delete(ctx, phoneKey(account, phone), jetstream.LastRevision(entry.Revision()))
			if err != nil && !errors.Is(err, jetstream.ErrKeyExists) { // ErrKeyExists: a newer call took the number meanwhile
				return OpenCall{}, err
			}
		}
	}
	if open.ID == "" {
		open.ID = callID
	}
	if open.ID == "" {
		return OpenCall{}, nil
	}
	entry, err := c.kv.Get(ctx, answerKey(account, open.ID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return OpenCall{}, err
	default:
		open.Agent = string(entry.Value())
	}
	return open, nil
}
