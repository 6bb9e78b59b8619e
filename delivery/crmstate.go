package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/crm"
)

// crmMarkerTTL is how long the crm bucket keeps the marker of a key that expired or was
// deleted. Nothing watches the bucket, so a minute is enough; without it each deleted key
// would leave a marker for ever.
const crmMarkerTTL = time.Minute

// CRMState is a target's part of the crm bucket (crm.State): its keys are
// <target>.<connector's key>, so targets never see each other's state.
func (e *Engine) CRMState(target string) (crm.State, error) {
	kv := e.crm.Load()
	if kv == nil {
		return nil, errors.New("queue not started yet")
	}
	if err := e.Writable(); err != nil {
		return nil, err
	}
	return &crmState{js: e.js, kv: *kv, prefix: target + "."}, nil
}

type crmState struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	prefix string
}

func (s *crmState) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	entry, err := s.kv.Get(ctx, s.prefix+key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, crm.ErrNotFound
	}
	if err != nil {
		return nil, 0, err
	}
	return entry.Value(), entry.Revision(), nil
}

func (s *crmState) Put(ctx context.Context, key string, value []byte, revision uint64, ttl time.Duration) (uint64, error) {
	var rev uint64
	var err error
	switch {
	case revision == 0:
		// Create also takes a key whose last entry is a delete.
		rev, err = s.kv.Create(ctx, s.prefix+key, value, jetstream.KeyTTL(ttl))
	case ttl == 0:
		rev, err = s.kv.Update(ctx, s.prefix+key, value, revision)
	default:
		// Update writes an entry without a TTL, so the key would stay for ever. This is
		// Update's compare-and-set with the TTL: the bucket's subject for the key, the
		// expected last revision.
		var ack *jetstream.PubAck
		ack, err = s.js.Publish(ctx, "$KV."+s.kv.Bucket()+"."+s.prefix+key, value,
			jetstream.WithExpectLastSequencePerSubject(revision), jetstream.WithMsgTTL(ttl))
		if err == nil {
			rev = ack.Sequence
		}
	}
	if wrongRevision(err) {
		return 0, crm.ErrConflict
	}
	return rev, err
}

// wrongRevision is JetStream's refusal of a write whose expected last revision of the key is
// not its last: 10071, or 10164 from a replicated bucket.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Delete purges the key rather than leaving a delete marker, which would stay for ever: the
// purge's marker goes after crmMarkerTTL.
func (s *crmState) Delete(ctx context.Context, key string) error {
	return s.kv.Purge(ctx, s.prefix+key, jetstream.PurgeTTL(crmMarkerTTL))
}
