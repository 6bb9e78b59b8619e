package mango

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
)

// The query is a signed form whose json asks to download the recording, byte for byte as
// signed, for ids with the characters base64 ids carry.
func TestRecordingQuery(t *testing.T) {
	for _, id := range []string{"MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=", "a/b+c=", `quote"and<tag>`} {
		f, err := ParseForm([]byte(RecordingQuery(testKey, testSalt, id)))
		if err != nil {
			t.Fatal(err)
		}
		if !Verify(f, testKey, testSalt) {
			t.Errorf("%s: the query does not verify with the account's key and salt", id)
		}
		var q map[string]string
		if err := json.Unmarshal([]byte(f.JSON), &q); err != nil {
			t.Fatal(err)
		}
		if len(q) != 2 || q["recording_id"] != id || q["action"] != "download" {
			t.Errorf("%s: json = %s", id, f.JSON)
		}
	}
}

func TestRecordingAnswer(t *testing.T) {
	for _, tt := range []struct {
		name        string
		status      int
		body        string
		notFound    bool
		code        int64
		unavailable bool
	}{
		{"404 without body", http.StatusNotFound, "", true, 0, false},
		{"404 with HTML", http.StatusNotFound, "<html>Not Found</html>", true, 0, false},
		{"result 3320", http.StatusOK, `{"result":3320}`, true, 0, false},
		{"result 3320 quoted", http.StatusOK, `{"result":"3320"}`, true, 0, false},
		{"DOC2017 420 code 3320", 420, `{"code": 3320}`, true, 0, false},
		{"lockout", http.StatusUnauthorized, `{"result":3102}`, false, 3102, false},
		{"wrong format", 420, `{"code":3104}`, false, 3104, false},
		{"rate limit", http.StatusTooManyRequests, `{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}`, false, 0, true},
		{"server error code", http.StatusOK, `{"result":5008}`, false, 5008, true},
		{"gateway down", http.StatusBadGateway, "<html>bad gateway</html>", false, 0, true},
		{"ok without a file", http.StatusOK, `{"result":1000}`, false, 1000, false},
		{"garbage", http.StatusOK, `[1,2`, false, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := RecordingAnswer(tt.status, []byte(tt.body))
			if got := errors.Is(err, ErrRecordingNotFound); got != tt.notFound {
				t.Fatalf("not found = %v (%v), want %v", got, err, tt.notFound)
			}
			if tt.notFound {
				return
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("%v is not an *APIError", err)
			}
			if apiErr.Status != tt.status || apiErr.Code != tt.code || apiErr.Unavailable() != tt.unavailable {
				t.Errorf("got %+v unavailable=%v, want status %d code %d unavailable=%v",
					apiErr, apiErr.Unavailable(), tt.status, tt.code, tt.unavailable)
			}
		})
	}
}
