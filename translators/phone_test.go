package translators

import (
	"fmt"
	"testing"
)

func TestNumber(t *testing.T) {
	for _, tt := range []struct{ raw, region, want string }{
		{"89201234567", "RU", "+79201234567"},
		{"79201234567", "RU", "+79201234567"},
		{"+7 (920) 123-45-67", "RU", "+79201234567"},
		{" 79201234567", "RU", "+79201234567"}, // an unencoded '+' in a form
		{"9201234567", "RU", "+79201234567"},
		{"4951234567", "", "+74951234567"},
		{"+442071838750", "RU", "+442071838750"},
		{"101", "RU", "101"},
		{"sip:101@vpbx.example.ru", "RU", "sip:101@vpbx.example.ru"},
		{"operator@domain", "RU", "operator@domain"},
		{"70001234567", "RU", "70001234567"}, // not a valid number anywhere
		{"", "RU", ""},
	} {
		for _, pass := range []string{"parsed", "remembered"} {
			if got := Number(tt.raw, tt.region); got != tt.want {
				t.Errorf("%s: Number(%q, %q) = %q, want %q", pass, tt.raw, tt.region, got, tt.want)
			}
		}
	}
}

// A full memory starts afresh and keeps answering correctly.
func TestNumberMemoryBounded(t *testing.T) {
	for i := range maxKnownNumbers + 10 {
		want := fmt.Sprintf("+7920%07d", i)
		if got := Number(want[1:], "RU"); got != want {
			t.Fatalf("Number(%q) = %q", want[1:], got)
		}
	}
	knownNumbers.RLock()
	defer knownNumbers.RUnlock()
	if n := len(knownNumbers.m); n > maxKnownNumbers {
		t.Errorf("%d numbers remembered, bound %d", n, maxKnownNumbers)
	}
}

// BenchmarkNumber/parse is the phone-number library; /remembered a number already seen.
func BenchmarkNumber(b *testing.B) {
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			parseNumber("89201234567", "RU")
		}
	})
	b.Run("remembered", func(b *testing.B) {
		for b.Loop() {
			Number("89201234567", "RU")
		}
	})
}
