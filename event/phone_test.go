package event

import (
	"fmt"
	"testing"
)

func TestNumber(t *testing.T) {
	for _, tt := range []struct{ raw, region, want string }{
		{"89201234567", "RU", "+79201234567"},
		{"79201234567", "RU", "+79201234567"},
		{"+7 (920) 123-45-67", "RU", "+79201234567"},
		{"8 (920) 123-45-67", "RU", "+79201234567"},
		{" 79201234567", "RU", "+79201234567"}, // an unencoded '+' in a form
		{"9201234567", "RU", "+79201234567"},
		{"4951234567", "", "+74951234567"},
		{"+442071838750", "RU", "+442071838750"},
		{"810442071838750", "RU", "+442071838750"}, // RU's international call prefix
		{"375291234567", "RU", "+375291234567"},    // longer than any RU number: a country code
		{"442071838750", "RU", "+442071838750"},
		{"12025550123", "RU", "12025550123"}, // as long as a RU number: not read as +1
		{"2345678", "RU", "2345678"},         // a city number without its area code
		{"495123456", "RU", "495123456"},     // not the German +495123456
		{"101", "RU", "101"},
		{"sip:101@vpbx.example.ru", "RU", "sip:101@vpbx.example.ru"},
		{"operator@domain", "RU", "operator@domain"},
		{"70001234567", "RU", "70001234567"},   // not a valid number anywhere
		{"80001234567", "RU", "80001234567"},   // nor with the trunk prefix (not +800 freephone)
		{"+70001234567", "RU", "+70001234567"}, // nor with '+': kept as sent
		{"+4951234567", "RU", "+4951234567"},   // a possible German length, not a valid number
		{"", "RU", ""},
	} {
		for _, pass := range []string{"parsed", "remembered"} {
			if got := Number(tt.raw, tt.region); got != tt.want {
				t.Errorf("%s: Number(%q, %q) = %q, want %q", pass, tt.raw, tt.region, got, tt.want)
			}
		}
	}
}

// Every length a PBX may send, bare and behind each prefix a Russian PBX writes: only a valid
// number becomes E.164 (10 digits bare, 11 behind 7 or 8, +7 and 10 digits); a 12-15 digit
// string too long for RU is read with its own country code (here +49, Germany takes most
// lengths); 16 and more is never E.164.
func TestNumberLengths(t *testing.T) {
	for _, tt := range []struct{ raw, want string }{
		{"4", "4"},
		{"49", "49"},
		{"495", "495"},
		{"4951", "4951"},
		{"49512", "49512"},
		{"495123", "495123"},
		{"4951234", "4951234"},
		{"49512345", "49512345"},
		{"495123456", "495123456"},
		{"4951234567", "+74951234567"},
		{"49512345678", "49512345678"},
		{"495123456789", "+495123456789"},
		{"4951234567890", "+4951234567890"},
		{"49512345678901", "+49512345678901"},
		{"495123456789012", "+495123456789012"},
		{"4951234567890123", "4951234567890123"},
		{"49512345678901234", "49512345678901234"},

		{"+7", "+7"},
		{"+74", "+74"},
		{"+749", "+749"},
		{"+7495", "+7495"},
		{"+74951", "+74951"},
		{"+749512", "+749512"},
		{"+7495123", "+7495123"},
		{"+74951234", "+74951234"},
		{"+749512345", "+749512345"},
		{"+7495123456", "+7495123456"},
		{"+74951234567", "+74951234567"},
		{"+749512345678", "+749512345678"},
		{"+7495123456789", "+7495123456789"},
		{"+74951234567890", "+74951234567890"},
		{"+749512345678901", "+749512345678901"},
		{"+7495123456789012", "+7495123456789012"},
		{"+74951234567890123", "+74951234567890123"},

		{"8", "8"},
		{"84", "84"},
		{"849", "849"},
		{"8495", "8495"},
		{"84951", "84951"},
		{"849512", "849512"},
		{"8495123", "8495123"},
		{"84951234", "84951234"},
		{"849512345", "849512345"},
		{"8495123456", "8495123456"},
		{"84951234567", "+74951234567"},
		{"849512345678", "849512345678"},
		{"8495123456789", "8495123456789"},
		{"84951234567890", "84951234567890"},
		{"849512345678901", "849512345678901"},
		{"8495123456789012", "8495123456789012"},
		{"84951234567890123", "84951234567890123"},

		{"7", "7"},
		{"74", "74"},
		{"749", "749"},
		{"7495", "7495"},
		{"74951", "74951"},
		{"749512", "749512"},
		{"7495123", "7495123"},
		{"74951234", "74951234"},
		{"749512345", "749512345"},
		{"7495123456", "7495123456"},
		{"74951234567", "+74951234567"},
		{"749512345678", "749512345678"},
		{"7495123456789", "7495123456789"},
		{"74951234567890", "74951234567890"},
		{"749512345678901", "749512345678901"},
		{"7495123456789012", "7495123456789012"},
		{"74951234567890123", "74951234567890123"},
	} {
		if got := Number(tt.raw, "RU"); got != tt.want {
			t.Errorf("Number(%q, RU) = %q, want %q", tt.raw, got, tt.want)
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
