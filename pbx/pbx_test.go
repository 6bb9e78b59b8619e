package pbx

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseSources(t *testing.T) {
	presets := map[string][]string{"mango": {"81.88.80.132"}}
	for _, tt := range []struct {
		in               []string
		allowed, refused []string
		err              string
	}{
		{in: []string{"any"}, allowed: []string{"203.0.113.9", "::1"}},
		{in: []string{"mango", "203.0.113.0/24", "2001:db8::1"}, allowed: []string{"81.88.80.132", "203.0.113.200", "2001:db8::1", "::ffff:203.0.113.5"}, refused: []string{"81.88.80.133", "203.0.114.1", "2001:db8::2"}},
		{in: []string{"10.0.0.7/8"}, allowed: []string{"10.200.0.1"}},
		{in: []string{"any", "10.0.0.1"}, err: "cannot be combined"},
		{in: []string{"10.0.0.0/33"}, err: "not a CIDR"},
		{in: []string{"xvb"}, err: "`mango`"},
	} {
		s, err := ParseSources(tt.in, presets)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tt.in, err)
		}
		for _, ip := range tt.allowed {
			if !s.Allows(netip.MustParseAddr(ip)) {
				t.Errorf("%v refuses %s", tt.in, ip)
			}
		}
		for _, ip := range tt.refused {
			if s.Allows(netip.MustParseAddr(ip)) {
				t.Errorf("%v allows %s", tt.in, ip)
			}
		}
	}
}

func TestSecretMatches(t *testing.T) {
	for _, tt := range []struct {
		got, want string
		ok        bool
	}{
		{"s3cret", "s3cret", true},
		{"s3cret ", "s3cret", false},
		{"S3cret", "s3cret", false},
		{"", "", false}, // no secret configured opens nothing
	} {
		if SecretMatches(tt.got, tt.want) != tt.ok {
			t.Errorf("SecretMatches(%q, %q) = %v", tt.got, tt.want, !tt.ok)
		}
	}
}

func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{`"1h30m"`: 90 * time.Minute, `2000000000`: 2 * time.Second} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v, want %v", in, time.Duration(d), err, want)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error(`"soon" is a duration`)
	}
}

func TestDialNumber(t *testing.T) {
	for _, tt := range []struct{ raw, want, err string }{
		{"+7 (900) 123-45-67", "79001234567", ""},
		{"8 900 123 45 67", "79001234567", ""},
		{"101", "101", ""},
		{"", "", "to is required"},
		{"call me", "", "not a phone number"},
	} {
		got, err := DialNumber("to", tt.raw, "RU")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %q %v, want error %q", tt.raw, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %q %v, want %q", tt.raw, got, err, tt.want)
		}
	}
}

func TestCallStatus(t *testing.T) {
	for _, tt := range []struct {
		status         string
		zero           bool
		direction      string
		result, reason string
	}{
		{"Success", false, "inbound", "answered", "completed"},
		{"Success", true, "inbound", "missed", "completed"},
		{"MISSED", false, "inbound", "missed", "no_answer"},
		{"Busy", false, "outbound", "busy", "busy"},
		{"Cancel", false, "outbound", "cancelled", "caller_hangup"},
		{"Cancel", false, "inbound", "missed", "caller_hangup"},
		{"callAerror", false, "outbound", "failed", "failed"},
		{"Strange", false, "inbound", "missed", "unknown"},
		{"", false, "inbound", "missed", ""},
	} {
		if result, reason := CallStatus(tt.status, tt.zero, tt.direction); result != tt.result || reason != tt.reason {
			t.Errorf("%q zero=%v %s: %s %s, want %s %s", tt.status, tt.zero, tt.direction, result, reason, tt.result, tt.reason)
		}
	}
}
