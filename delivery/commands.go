package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CommandTTL is how long the first answer to a command id is kept: a CRM that repeats the
// command within it gets that answer, and nobody is called twice.
const CommandTTL = 10 * time.Minute

// Commands is the bucket of recent commands (a JetStream key-value store with CommandTTL),
// shared by every gateway on the store: the first request for a command id claims it, and
// the answer it stores is what a repetition gets, across reloads, restarts and instances.
type Commands struct{ kv jetstream.KeyValue }

// Commands returns the command bucket, or nil before Apply has created it.
func (e *Engine) Commands() *Commands { return e.commands.Load() }

// CommandKey is the bucket key of an account's command id. The id is the CRM's and may hold
// any character, so it is hashed.
func CommandKey(account, commandID string) string {
	sum := sha256.Sum256([]byte(commandID))
	return account + "." + hex.EncodeToString(sum[:16])
}

// Claim stores value under key if the key is free (never written, released or expired) and
// returns the claim's revision. If another request holds the key, it returns revision 0 and
// the value stored there.
func (c *Commands) Claim(ctx context.Context, key string, value []byte) (uint64, []byte, error) {
	for {
		rev, err := c.kv.Create(ctx, key, value)
		if err == nil {
			return rev, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, err
		}
		entry, err := c.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released or expired in between: claim again
		}
		if err != nil {
			return 0, nil, err
		}
		return 0, entry.Value(), nil
	}
}

// Settle replaces the claim's value with the answer, which repetitions then get.
func (c *Commands) Settle(ctx context.Context, key string, claim uint64, answer []byte) error {
	_, err := c.kv.Update(ctx, key, answer, claim)
	return err
}

// Release gives the claim up without an answer: the command was not carried out, so a
// repetition may send it.
func (c *Commands) Release(ctx context.Context, key string, claim uint64) error {
	return c.kv.Delete(ctx, key, jetstream.LastRevision(claim))
}

// Await waits until key holds a value for which settled is true and returns it; it returns
// nil when the key is released (or expires) first, so the caller may claim it.
func (c *Commands) Await(ctx context.Context, key string, settled func([]byte) bool) ([]byte, error) {
	w, err := c.kv.Watch(ctx, key)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case entry, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, ctx.Err()
			case entry == nil: // the end of the initial values
				if !seen {
					return nil, nil // gone (expired) before the watch began
				}
			case entry.Operation() != jetstream.KeyValuePut:
				return nil, nil
			case settled(entry.Value()):
				return entry.Value(), nil
			default:
				seen = true
			}
		}
	}
}
