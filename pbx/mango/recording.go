package mango

import (
	"encoding/json"
	"net/http"
)

// RecordingQueryPath is Mango's recording download query, relative to api_url (docs/mango.md,
// Recordings). Mango answers it with a 302 to a one-shot URL of the file; anything else is an
// Answer.
const RecordingQueryPath = "queries/recording/post"

// RecordingQuery is the signed form body of a RecordingQueryPath request that asks to download
// recordingID.
func RecordingQuery(apiKey, apiSalt, recordingID string) string {
	js, _ := json.Marshal(struct { // cannot fail: two strings
		RecordingID string `json:"recording_id"`
		Action      string `json:"action"`
	}{recordingID, "download"})
	return FormBody(apiKey, apiSalt, string(js))
}

// RecordingMissing reports whether an answer to a recording query says Mango has no such
// recording: HTTP 404, or result 3320. Mango does not tell an unknown id from one that is not
// downloadable yet (it promises the file only after /events/record/added).
func (a Answer) RecordingMissing() bool {
	return a.HTTPStatus == http.StatusNotFound || a.Code == 3320
}
