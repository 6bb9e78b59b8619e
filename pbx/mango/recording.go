package mango

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pbxbridge/pbxbridge/outbound"
	"github.com/pbxbridge/pbxbridge/pbx"
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

// answerMax bounds what is read of an API answer that is not the redirect.
const answerMax = 64 << 10

// RecordingID checks a recording id taken from a URL.
func (a *Account) RecordingID(id string) error {
	if len(id) > MaxIDBytes {
		return fmt.Errorf("recording id longer than Mango's %d bytes", MaxIDBytes)
	}
	return nil
}

// Recording fetches a recording, asking again while Mango does not have it yet, until f.Wait
// has passed: Mango announces a finished recording (/events/recording Completed, which gives
// the CRM its recording.ready) a little before the file can be downloaded (/events/record/added),
// so a CRM that fetches at once gets the file a few seconds late rather than a 404.
func (a *Account) Recording(ctx context.Context, id string, f pbx.RecordingFetch) (*pbx.Recording, *pbx.Rejection) {
	deadline := time.Now().Add(f.Wait)
	for {
		rec, fail := a.fetch(ctx, id, f)
		if fail == nil || fail.Reason != "not_found" || time.Until(deadline) < f.Poll {
			return rec, fail
		}
		select {
		case <-ctx.Done():
			return nil, &pbx.Rejection{Status: 499, Reason: "canceled", Msg: "the client went away"}
		case <-time.After(f.Poll):
		}
	}
}

// fetch asks Mango for the recording and copies the file its redirect points to into a
// temporary file (docs/recordings.md).
func (a *Account) fetch(clientCtx context.Context, id string, f pbx.RecordingFetch) (*pbx.Recording, *pbx.Rejection) {
	ctx, cancel := context.WithTimeout(clientCtx, f.Timeout)
	defer cancel()
	failed := func(what string, err error) *pbx.Rejection {
		return transportFailure(ctx, clientCtx, f.Timeout, what, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.apiURL+"/"+RecordingQueryPath,
		strings.NewReader(RecordingQuery(a.apiKey, a.apiSalt, id)))
	if err != nil {
		return nil, &pbx.Rejection{Status: http.StatusInternalServerError, Reason: "error", Msg: "api_url: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.API.Do(req)
	if err != nil {
		return nil, failed("Mango's API", err)
	}
	fileURL, err := resp.Location()
	if resp.StatusCode < 300 || resp.StatusCode > 399 || err != nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, answerMax))
		resp.Body.Close()
		return nil, recordingRefusal(ReadAnswer(resp.StatusCode, body))
	}
	resp.Body.Close()
	if fileURL.Scheme != "http" && fileURL.Scheme != "https" {
		return nil, &pbx.Rejection{Status: http.StatusBadGateway, Reason: "error", Msg: "Mango redirected to a non-HTTP file URL"}
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, fileURL.String(), nil)
	if err != nil {
		return nil, &pbx.Rejection{Status: http.StatusBadGateway, Reason: "error", Msg: "Mango's file URL: " + outbound.Unwrap(err).Error()}
	}
	if resp, err = f.Files.Do(req); err != nil {
		return nil, failed("Mango's file server", err)
	}
	defer resp.Body.Close()
	tooLarge := &pbx.Rejection{Status: http.StatusBadGateway, Reason: "too_large", Msg: fmt.Sprintf("the recording is larger than %d MiB", f.MaxSize>>20)}
	switch {
	case resp.StatusCode >= 500:
		return nil, &pbx.Rejection{Status: http.StatusBadGateway, Reason: "unavailable", Msg: fmt.Sprintf("Mango's file server answered HTTP %d", resp.StatusCode)}
	case resp.StatusCode != http.StatusOK:
		return nil, &pbx.Rejection{Status: http.StatusBadGateway, Reason: "error", Msg: fmt.Sprintf("Mango's file server answered HTTP %d", resp.StatusCode)}
	case resp.ContentLength > f.MaxSize:
		return nil, tooLarge
	}
	rec := &pbx.Recording{ContentType: resp.Header.Get("Content-Type")}
	if rec.ContentType == "" {
		rec.ContentType = "audio/mpeg"
	}
	rec.ModTime, _ = http.ParseTime(resp.Header.Get("Last-Modified"))
	if rec.File, err = os.CreateTemp("", "pbxbridge-recording-*"); err != nil {
		return nil, &pbx.Rejection{Status: http.StatusInternalServerError, Reason: "error", Msg: "temporary file: " + err.Error()}
	}
	sum := sha256.New()
	rec.Size, err = io.Copy(io.MultiWriter(rec.File, sum), io.LimitReader(resp.Body, f.MaxSize+1))
	switch {
	case err != nil:
		rec.Discard()
		return nil, failed("Mango's file server", err)
	case rec.Size > f.MaxSize:
		rec.Discard()
		return nil, tooLarge
	}
	rec.ETag = `"` + hex.EncodeToString(sum.Sum(nil)[:16]) + `"`
	return rec, nil
}

// transportFailure says why talking to Mango failed: the client left, the timeout passed, or
// Mango could not be reached. The URL is left out: the file URL is a one-shot credential.
func transportFailure(ctx, clientCtx context.Context, timeout time.Duration, what string, err error) *pbx.Rejection {
	switch {
	case clientCtx.Err() != nil:
		return &pbx.Rejection{Status: 499, Reason: "canceled", Msg: "the client went away"}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &pbx.Rejection{Status: http.StatusGatewayTimeout, Reason: "timeout", Msg: fmt.Sprintf("%s took longer than %s", what, timeout)}
	case errors.Is(err, outbound.ErrInternal):
		if oe := (*net.OpError)(nil); errors.As(err, &oe) {
			err = oe.Err // the policy's reason, without the dial's wording
		}
		return &pbx.Rejection{Status: http.StatusBadGateway, Reason: "error", Msg: "Mango redirected to a file URL pbxbridge does not fetch: " + err.Error()}
	}
	return &pbx.Rejection{Status: http.StatusBadGateway, Reason: "unavailable", Msg: what + " is unreachable: " + outbound.Unwrap(err).Error()}
}

// recordingRefusal maps Mango's answer other than the redirect to what the client sees: 404
// for a missing recording, else the status commands get for the same answer (Answer.Status).
func recordingRefusal(a Answer) *pbx.Rejection {
	if a.RecordingMissing() {
		return &pbx.Rejection{Status: http.StatusNotFound, Reason: "not_found", Msg: "Mango has no such recording, or not yet: a recording can be downloaded only after Mango has stored it (its record/added event); try again later"}
	}
	status, msg := a.Status(), fmt.Sprintf("Mango's answer (HTTP %d, result %d): %s", a.HTTPStatus, a.Code, a.Meaning())
	if status == http.StatusOK {
		return &pbx.Rejection{Status: http.StatusBadGateway, Reason: "error", Msg: fmt.Sprintf("Mango answered HTTP %d (result %d) without redirecting to the file", a.HTTPStatus, a.Code)}
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable || a.HTTPStatus >= 500 {
		return &pbx.Rejection{Status: status, Reason: "unavailable", Msg: msg}
	}
	return &pbx.Rejection{Status: status, Reason: "refused", Msg: msg}
}
