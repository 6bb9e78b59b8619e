// Package crmtest holds what the fake CRMs (amocrmtest, bitrix24test) share.
package crmtest

import "strings"

// Last10 is how the fakes match a phone number: by its last 10 digits, as amoCRM does
// (docs/amocrm.md), so that +7 (916) 123-45-67, 89161234567 and 79161234567 are one number.
func Last10(phone string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	return digits[max(0, len(digits)-10):]
}
