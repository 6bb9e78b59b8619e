package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
// It also keeps each account's command pace and pause (TakeTurn, Pause).
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

// Turn is the answer to TakeTurn.
type Turn struct {
	// Wait is how long until the command may be sent: the turn is taken.
	Wait time.Duration
	// Later, when positive, says no turn was taken, and when to ask again: the account is
	// paused (Paused is what Pause stored), or its queue is longer than the caller waits.
	Later  time.Duration
	Paused []byte
}

// pace is an account's command limits as the bucket keeps them: when the next command may be
// sent, and until when nothing is sent (Unix nanoseconds of the gateways' clocks).
type pace struct {
	Next        int64  `json:"next,omitempty"`
	PausedUntil int64  `json:"paused_until,omitempty"`
	Pause       []byte `json:"pause,omitempty"`
}

// paceKey is the bucket key of an account's limits; no CommandKey ends in ".pace".
func paceKey(account string) string { return account + ".pace" }

// TakeTurn reserves the account's next turn to send a command, one per interval, unless it is
// further away than maxWait or the account is paused. The pace is in the bucket, so every
// gateway on the store keeps to it together and it outlives reloads and restarts.
func (c *Commands) TakeTurn(ctx context.Context, account string, interval, maxWait time.Duration) (Turn, error) {
	var turn Turn
	err := c.updatePace(ctx, account, func(p *pace, now time.Time) bool {
		if until := time.Unix(0, p.PausedUntil); now.Before(until) {
			turn = Turn{Later: until.Sub(now), Paused: p.Pause}
			return false
		}
		at := now
		if next := time.Unix(0, p.Next); next.After(now) {
			at = next
		}
		if wait := at.Sub(now); wait > maxWait {
			turn = Turn{Later: wait}
			return false
		}
		turn = Turn{Wait: at.Sub(now)}
		p.Next = at.Add(interval).UnixNano()
		return true
	})
	return turn, err
}

// Pause stops the account's commands for d on every gateway (the PBX locked the account out,
// or said it is busy); TakeTurn hands answer back meanwhile. A longer pause already set stays.
func (c *Commands) Pause(ctx context.Context, account string, d time.Duration, answer []byte) error {
	return c.updatePace(ctx, account, func(p *pace, now time.Time) bool {
		until := now.Add(d).UnixNano()
		if until <= p.PausedUntil {
			return false
		}
		p.PausedUntil, p.Pause = until, answer
		return true
	})
}

// updatePace applies change to the account's limits with compare-and-set, again if another
// gateway changed them in between. change reports whether it changed anything.
func (c *Commands) updatePace(ctx context.Context, account string, change func(*pace, time.Time) bool) error {
	key := paceKey(account)
	for {
		var p pace
		var rev uint64
		entry, err := c.kv.Get(ctx, key)
		switch {
		case err == nil:
			rev = entry.Revision()
			if json.Unmarshal(entry.Value(), &p) != nil {
				p = pace{} // unreadable: nothing to keep to
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		if !change(&p, time.Now()) {
			return nil
		}
		value, _ := json.Marshal(p)
		if rev == 0 {
			_, err = c.kv.Create(ctx, key, value)
		} else {
			_, err = c.kv.Update(ctx, key, value, rev)
		}
		if err == nil || !(errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			return err
		}
	}
}
