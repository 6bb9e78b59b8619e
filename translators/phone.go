package translators

import (
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRegion is the region assumed for numbers written without a country code.
const DefaultRegion = "RU"

// maxPhoneDigits bounds what is handed to the phone-number parser.
const maxPhoneDigits = 17

// knownNumbers remembers Number's answers: the phone-number library takes several µs a number
// (regular expressions), a tenth of a webhook's CPU, and a call's webhooks repeat its numbers.
var knownNumbers struct {
	sync.RWMutex
	m map[numberKey]string
}

type numberKey struct{ raw, region string }

// maxKnownNumbers bounds knownNumbers; when full it starts afresh.
const maxKnownNumbers = 16384

// Number returns a phone number in E.164 (+7…) when raw parses as a valid number of region
// (or carries its own country code), and raw unchanged otherwise: SIP URIs, SIP user names,
// login@domain, short extensions and anything else that is not a phone number stay as given.
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
	digits := strings.TrimPrefix(s, "+")
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
	if strings.ContainsRune(clean, 'x') || len(clean) < 7 || len(clean) > maxPhoneDigits {
		return raw
	}
	if !strings.HasPrefix(s, "+") && region == "RU" && len(clean) == 11 && clean[0] == '8' {
		clean = "7" + clean[1:] // Russian trunk prefix
	}
	candidate := clean
	if strings.HasPrefix(s, "+") {
		candidate = "+" + clean
	}
	num, err := phonenumbers.Parse(candidate, region)
	if err != nil || !phonenumbers.IsPossibleNumber(num) {
		// A country code without '+' (7XXXXXXXXXX): only a number valid in its country
		// counts, so a short internal number never turns into a foreign one.
		num, err = phonenumbers.Parse("+"+clean, region)
		if err != nil || !phonenumbers.IsValidNumber(num) {
			return raw
		}
	}
	return phonenumbers.Format(num, phonenumbers.E164)
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
