package xvb

import (
	"strings"
	"testing"
)

func TestReadCallAnswer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		status   int
		body     string
		accepted bool
		answer   int
		error    string
	}{
		{"200, empty", 200, "", true, 200, ""},
		{"200, JSON without error", 200, `{"status":"ok","message":"call queued"}`, true, 200, ""},
		{"200 with a JSON error", 200, `{"error":"unknown extension 999"}`, false, 502, "unknown extension 999"},
		{"200 with error 0", 200, `{"error":0}`, true, 200, ""},
		{"403 with a message", 403, `{"message":"bad token"}`, false, 502, "bad token"},
		{"500 text, first line only", 500, "Internal error\n<pre>stack</pre>", false, 502, "Internal error"},
		{"429 passes through", 429, "slow down", false, 429, "slow down"},
		{"503 passes through", 503, "", false, 503, ""},
		{"long text is cut on a rune", 500, strings.Repeat("я", 150), false, 502, strings.Repeat("я", 100)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := ReadCallAnswer(tt.status, []byte(tt.body))
			if a.Accepted() != tt.accepted || a.Status() != tt.answer || a.Error != tt.error {
				t.Errorf("accepted %v status %d error %q", a.Accepted(), a.Status(), a.Error)
			}
		})
	}
}
