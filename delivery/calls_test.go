package delivery

import (
	"context"
	"testing"
)

// The open-call bucket, on a real embedded JetStream: what an XVB call's INCOMING and
// ANSWERED wrote comes back to the COMPLETED that closes it, by number or by call id.
func TestCalls(t *testing.T) {
	e := openEngine(t, Config{})
	if err := e.Apply(context.Background(), Config{}, []Target{testTarget("http://127.0.0.1:9/")}); err != nil {
		t.Fatal(err)
	}
	ctx, calls := context.Background(), e.Calls()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(calls.Open(ctx, "main", "+79201119620", OpenCall{ID: "OUT1", Type: "out", Ext: "104"}))
	must(calls.Open(ctx, "main", "+79201119622", OpenCall{ID: "IN1", Type: "in"}))
	must(calls.Answer(ctx, "main", "IN1", "102"))
	must(calls.Open(ctx, "main", "+79201119624", OpenCall{ID: "OLD", Type: "in"}))
	must(calls.Open(ctx, "main", "+79201119624", OpenCall{ID: "NEW", Type: "out", Ext: "107"})) // the number moved on
	_, err := calls.kv.Put(ctx, phoneKey("main", "+79201119626"), []byte("LEGACY"))             // as an older version wrote it
	must(err)

	for _, tt := range []struct {
		name, phone, callID string
		want                OpenCall
	}{
		{"by number", "+79201119620", "", OpenCall{ID: "OUT1", Type: "out", Ext: "104"}},
		{"closed: nothing open any more", "+79201119620", "", OpenCall{}},
		{"by call id, with who answered", "+79201119622", "IN1", OpenCall{ID: "IN1", Type: "in", Agent: "102"}},
		{"answered, after the number was closed", "+79201119622", "IN1", OpenCall{ID: "IN1", Agent: "102"}},
		{"by call id, the number now another call's", "+79201119624", "OLD", OpenCall{ID: "OLD"}},
		{"that other call is still open", "+79201119624", "", OpenCall{ID: "NEW", Type: "out", Ext: "107"}},
		{"written by an older version", "+79201119626", "", OpenCall{ID: "LEGACY"}},
		{"no number", "", "", OpenCall{}},
		{"no number, a call id", "", "X1", OpenCall{ID: "X1"}},
		{"another account", "+79201119622", "", OpenCall{}},
	} {
		account := "main"
		if tt.name == "another account" {
			account = "other"
		}
		got, err := calls.Close(ctx, account, tt.phone, tt.callID)
		if err != nil || got != tt.want {
			t.Errorf("%s: Close = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}
