package caddymodule

import (
	"testing"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// provisioned is an account of kind built from cfg, as the app builds it, in region RU.
func provisioned(t testing.TB, kind, name string, cfg pbx.Config) pbx.Account {
	t.Helper()
	acc, err := cfg.Provision(name, pbx.Env{
		Origin: event.Origin{PBX: kind, Account: name, Region: "RU"},
		Expand: func(s string) string { return s },
		Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}
