package mango

import (
	"encoding/json"
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

func TestRecordingMissing(t *testing.T) {
	for _, tt := range []struct {
		status  int
		body    string
		missing bool
	}{
		{http.StatusNotFound, "", true},
		{http.StatusNotFound, "<html>Not Found</html>", true},
		{http.StatusOK, `{"result":3320}`, true},
		{http.StatusOK, `{"result":"3320"}`, true},
		{420, `{"code": 3320}`, true},
		{http.StatusOK, `{"result":3310}`, false}, // call not found: not a recording answer
		{http.StatusUnauthorized, `{"result":3102}`, false},
		{http.StatusTooManyRequests, `{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}`, false},
		{http.StatusBadGateway, "", false},
		{http.StatusOK, `{"result":1000}`, false},
	} {
		if got := ReadAnswer(tt.status, []byte(tt.body)).RecordingMissing(); got != tt.missing {
			t.Errorf("HTTP %d %s: RecordingMissing = %v, want %v", tt.status, tt.body, got, tt.missing)
		}
	}
}
