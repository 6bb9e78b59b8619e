package caddymodule

import "testing"

func TestBearerMatches(t *testing.T) {
	const token = "tok-0123456789"
	for _, tt := range []struct {
		header string
		want   bool
	}{
		{"Bearer " + token, true},
		{"bearer " + token, true},
		{"BEARER " + token, true},
		{"Bearer  " + token, false},
		{"Bearer " + token + " ", false},
		{"Bearer\t" + token, false},
		{"Bearer " + token + "x", false},
		{"Bearer " + token[:len(token)-1], false},
		{"Bearer", false},
		{"Bearer ", false},
		{token, false},
		{"Basic " + token, false},
		{"Bearer" + token, false},
	} {
		if got := bearerMatches(tt.header, token); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.header, got, tt.want)
		}
	}
}
