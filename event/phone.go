package event

import (
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is the region assumed for numbers written without a country code.
const DefaultRegion = "RU"

const (
	// maxPhoneDigits bounds what is handed to the phone-number parser (a national or
	// international prefix may come before the 15 digits of E.164).
	maxPhoneDigits = 17
	// e164MaxDigits is the most digits an E.164 number has, country code included.
	e164MaxDigits = 15
)

// knownNumbers remembers Number's answers: the phone-number library takes several µs a number
// (regular expressions), a tenth of a webhook's CPU, and a call's webhooks repeat its numbers.
var knownNumbers struct {
	sync.RWMutex
	m map[numberKey]string
}

type numberKey struct{ raw, region string }

// maxKnownNumbers bounds knownNumbers; when full it starts afresh.
const maxKnownNumbers = 16384

// Number returns a phone number in E.164 (+7…) when raw is a valid number, and raw unchanged
// otherwise. Valid means valid, not merely of a possible length:
//
//   - a number with '+', or with region's international call prefix (810 in RU), must be valid
//     in the country it names;
//   - a number without them must be valid in region, its national prefix (8 in RU) or its
//     country code (7 in RU) allowed: 89201234567, 79201234567 and 9201234567 are +79201234567;
//   - a number without them that is longer than region's numbers written with their country
//     code (11 digits in RU), and no longer than E.164's 15 digits, starts with a country code
//     of its own and must be valid there: 375291234567 is +375291234567.
//
// Everything else stays exactly as sent: SIP URIs, SIP user names, login@domain, extensions,
// a city number without its area code (2345678: nobody could dial +72345678 back), and a
// number of region's length that is not valid there, whatever another country makes of it
// (495123456 is not the German +495123456).
func Number(raw, region string) string {
	key := numberKey{raw, region}
	knownNumbers.RLock()
	n, ok := knownNumbers.m[key]
	knownNumbers.RUnlock()
	if ok {
		return n
	}
	n = parseNumber(raw, region)
	knownNumbers.Lock()
	if len(knownNumbers.m) >= maxKnownNumbers || knownNumbers.m == nil {
		knownNumbers.m = make(map[numberKey]string, 1024)
	}
	knownNumbers.m[key] = n
	knownNumbers.Unlock()
	return n
}

func parseNumber(raw, region string) string {
	s := strings.TrimSpace(raw)
	if s == "" {
		return ""
	}
	if region == "" {
		region = DefaultRegion
	}
	// A '+' sent unencoded in a form arrives as a leading space; it was trimmed above.
	if strings.HasPrefix(raw, " ") && !strings.HasPrefix(s, "+") && isDigits(s) {
		s = "+" + s
	}
	digits, plus := strings.CutPrefix(s, "+")
	// Only digits and the usual separators may form a phone number.
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9':
			return r
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
			return -1
		}
		return 'x'
	}, digits)
	// No valid number has fewer than 7 digits, country code included.
	if strings.ContainsRune(clean, 'x') || len(clean) < 7 || len(clean) > maxPhoneDigits {
		return raw
	}
	candidate := clean
	if plus {
		candidate = "+" + clean
	}
	num, err := phonenumbers.Parse(candidate, region)
	if err != nil {
		return raw
	}
	if !phonenumbers.IsValidNumber(num) {
		if plus || len(clean) <= internationalLength(region) || len(clean) > e164MaxDigits {
			return raw
		}
		if num, err = phonenumbers.Parse("+"+clean, region); err != nil || !phonenumbers.IsValidNumber(num) {
			return raw
		}
	}
	return phonenumbers.Format(num, phonenumbers.E164)
}

// internationalLength is how many digits region's numbers have with their country code (11 in
// RU), going by the library's example number; unknown regions never count.
func internationalLength(region string) int {
	ex := phonenumbers.GetExampleNumber(region)
	if ex == nil {
		return maxPhoneDigits
	}
	return len(strconv.Itoa(int(ex.GetCountryCode()))) + len(phonenumbers.GetNationalSignificantNumber(ex))
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
