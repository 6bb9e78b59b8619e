package mango

import "testing"

func TestRoute(t *testing.T) {
	for _, tt := range []struct {
		path, suffix string
		ok           bool
	}{
		{"/hooks/mango/events/call", "events/call", true},
		{"/events/call", "events/call", true},
		{"events/call", "events/call", true},
		{"/hooks/mango/events/call/", "events/call", true},
		{"/vpbx/api/v1/events/summary", "events/summary", true},
		{"/hooks/mango/events/recording", "events/recording", true},
		{"/hooks/mango/events/record/added", "events/record/added", true},
		{"/hooks/mango/events/record/tagged", "events/record/tagged", true},
		{"/hooks/mango/events/dtmf", "events/dtmf", true},
		{"/hooks/mango/events/sms", "events/sms", true},
		{"/hooks/mango/result/callback", "result/callback", true},
		{"/hooks/mango/vpbx/result/callback", "result/callback", true},
		{"/hooks/mango/result/callback_group", "result/callback_group", true},
		{"/hooks/mango/result/call/hangup", "result/call/hangup", true},
		{"/hooks/mango/result/call/hold/on", "result/call/hold/on", true},
		{"/hooks/mango/result/stat", "result/stat", true},
		{"/hooks/mango/result/stats", "result/stats", true},
		{"/hooks/result/events/call", "events/call", true},
		{"/hooks/mango/ping", "ping", true},
		{"/ping", "ping", true},

		{"/hooks/mango/events/md", "events/md", false},
		{"/hooks/result/events/md", "events/md", false},
		{"/hooks/mango/xevents/call", "hooks/mango/xevents/call", false},
		{"/hooks/mango/result", "hooks/mango/result", false},
		{"/hooks/mango/result/", "hooks/mango/result", false},
		{"/hooks/mango/", "hooks/mango", false},
		{"/hooks/mango/notping", "hooks/mango/notping", false},
		{"", "", false},
		{"/", "", false},
	} {
		suffix, ok := Route(tt.path)
		if suffix != tt.suffix || ok != tt.ok {
			t.Errorf("Route(%q) = %q, %v; want %q, %v", tt.path, suffix, ok, tt.suffix, tt.ok)
		}
	}
}

func TestPing(t *testing.T) {
	suffix, ok := Route("/hooks/mango/ping")
	if !ok || !IsPing(suffix) {
		t.Fatalf("Route = %q, %v", suffix, ok)
	}
	for _, payload := range []string{"", "{}", "not json", `{"ping":1}`} {
		if evs := Translate(testSrc, suffix, []byte(payload), testReceived); len(evs) != 0 {
			t.Errorf("ping %q yields %d events", payload, len(evs))
		}
	}
	for _, s := range []string{"events/call", "result/ping", "Ping", ""} {
		if IsPing(s) {
			t.Errorf("IsPing(%q)", s)
		}
	}
}
