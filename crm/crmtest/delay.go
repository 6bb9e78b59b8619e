package crmtest

import (
	"net/http"
	"time"
)

// Delay is a slow CRM's answer: it waits d, and is false if the request goes away first.
func Delay(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}
