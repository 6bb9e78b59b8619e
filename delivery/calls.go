package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// callTTL is how long an open call is remembered: a call still going after this long is
// joined by a derived id instead.
const callTTL = 6 * time.Hour

// Calls is the open-call bucket (a JetStream key-value store with a TTL) that joins a PBX
// message without a call id (XVB's COMPLETED) to the call that the same phone number opened on
// the same account. It lives before the queue so translators stay pure.
type Calls struct{ kv jetstream.KeyValue }

// Calls returns the open-call bucket, or nil before Apply has created it.
func (e *Engine) Calls() *Calls { return e.calls.Load() }

// Key names no phone number: bucket keys are visible to anyone with NATS access.
func callKey(account, phone string) string {
	sum := sha256.Sum256([]byte(phone))
	return account + "." + hex.EncodeToString(sum[:16])
}

// Open records callID as the open call of phone on account.
func (c *Calls) Open(ctx context.Context, account, phone, callID string) error {
	_, err := c.kv.Put(ctx, callKey(account, phone), []byte(callID))
	return err
}

// Find returns the open call of phone on account.
func (c *Calls) Find(ctx context.Context, account, phone string) (string, bool, error) {
	entry, err := c.kv.Get(ctx, callKey(account, phone))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(entry.Value()), true, nil
}

// Close forgets the open call of phone on account, if it is still callID.
func (c *Calls) Close(ctx context.Context, account, phone, callID string) error {
	entry, err := c.kv.Get(ctx, callKey(account, phone))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if string(entry.Value()) != callID {
		return nil
	}
	err = c.kv.Delete(ctx, callKey(account, phone), jetstream.LastRevision(entry.Revision()))
	if errors.Is(err, jetstream.ErrKeyExists) { // a newer call took the number meanwhile
		return nil
	}
	return err
}
