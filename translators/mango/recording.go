package mango

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// RecordingQueryPath is Mango's recording download query, relative to the API base URL
// (mango.md §9.5). Mango answers it with a 302 to a one-shot URL of the file.
const RecordingQueryPath = "/queries/recording/post"

// RecordingQuery is the signed form body of a RecordingQueryPath request that asks to download
// recordingID.
func RecordingQuery(apiKey, apiSalt, recordingID string) string {
	js, _ := json.Marshal(struct { // cannot fail: two strings
		RecordingID string `json:"recording_id"`
		Action      string `json:"action"`
	}{recordingID, "download"})
	return FormBody(apiKey, apiSalt, string(js))
}

// ErrRecordingNotFound is Mango's answer for a recording it does not give out: an unknown id,
// or one not downloadable yet (Mango promises the file only after /events/record/added, and
// its answer does not tell the two apart).
var ErrRecordingNotFound = errors.New("mango: recording not found")

// resultRecordingNotFound is result code 3320 (mango.md §8).
const resultRecordingNotFound = 3320

// APIError is an answer of Mango's API that refuses a request: its HTTP status and the result
// code of its body, when it has one (`{"result":3102}`, or DOC2017's `{"code":3104}`).
type APIError struct {
	Status int
	Code   int64
}

func (e *APIError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("mango: API answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("mango: API answered HTTP %d, result %d", e.Status, e.Code)
}

// Unavailable reports whether Mango is down or busy (try again later) rather than refusing
// the request itself: HTTP 429 or 5xx, or a result code of class 5xxx (server errors).
func (e *APIError) Unavailable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500 || e.Code/1000 == 5
}

// RecordingAnswer interprets an answer to a recording query that is not the redirect to the
// file: ErrRecordingNotFound for HTTP 404 or result 3320, otherwise an *APIError. The body is
// read leniently: any JSON object with a numeric or quoted `result` or `code`, or none.
func RecordingAnswer(status int, body []byte) error {
	var code int64
	if f, err := decodeObject(body); err == nil {
		if code = f.num("result"); code == 0 {
			code = f.num("code")
		}
	}
	if status == http.StatusNotFound || code == resultRecordingNotFound {
		return ErrRecordingNotFound
	}
	return &APIError{Status: status, Code: code}
}
