package delivery

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/crm"
)

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
	return &crmState{kv: *kv, prefix: target + "."}, nil
}

type crmState struct {
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

func (s *crmState) Put(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	var rev uint64
	var err error
	if revision == 0 {
		// Create also takes a key whose last entry is a delete.
		rev, err = s.kv.Create(ctx, s.prefix+key, value)
	} else {
		rev, err = s.kv.Update(ctx, s.prefix+key, value, revision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, crm.ErrConflict
	}
	return rev, err
}

func (s *crmState) Delete(ctx context.Context, key string) error {
	return s.kv.Delete(ctx, s.prefix+key)
}
