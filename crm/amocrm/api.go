package amocrm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/pbxbridge/pbxbridge/crm"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// call is one entry of POST /api/v4/calls.
type call struct {
	Direction         string `json:"direction"`
	UniqID            string `json:"uniq"`
	Duration          int    `json:"duration"`
	Source            string `json:"source"`
	Phone             string `json:"phone"`
	Link              string `json:"link,omitempty"`
	Status            int    `json:"call_status,omitempty"`
	Responsible       any    `json:"call_responsible,omitempty"` // a user id, or the extension as given
	ResponsibleUserID int    `json:"responsible_user_id,omitempty"`
	CreatedBy         int    `json:"created_by,omitempty"`
	CreatedAt         int64  `json:"created_at,omitempty"`
	RequestID         string `json:"request_id"`
}

// unsorted is one entry of POST /api/v4/leads/unsorted/sip.
type unsorted struct {
	SourceUID  string           `json:"source_uid"`
	SourceName string           `json:"source_name"`
	PipelineID int              `json:"pipeline_id,omitempty"`
	CreatedAt  int64            `json:"created_at,omitempty"`
	RequestID  string           `json:"request_id"`
	Metadata   sipMetadata      `json:"metadata"`
	Embedded   unsortedEmbedded `json:"_embedded"`
}

type sipMetadata struct {
	IsCallEventNeeded bool   `json:"is_call_event_needed"`
	UniqID            string `json:"uniq"`
	Duration          int    `json:"duration"`
	ServiceCode       string `json:"service_code"`
	Link              string `json:"link,omitempty"`
	Phone             string `json:"phone"`
	CalledAt          int64  `json:"called_at"`
	From              string `json:"from"`
	CallResponsible   int    `json:"call_responsible,omitempty"`
}

type unsortedEmbedded struct {
	Leads    []namedEntity `json:"leads"`
	Contacts []namedEntity `json:"contacts"`
}

type namedEntity struct {
	Name               string        `json:"name"`
	CustomFieldsValues []customField `json:"custom_fields_values,omitempty"`
}

type customField struct {
	FieldCode string       `json:"field_code"`
	Values    []fieldValue `json:"values"`
}

type fieldValue struct {
	Value    string `json:"value"`
	EnumCode string `json:"enum_code"`
}

// api makes an account's requests, paced for the whole account.
type api struct {
	base, token, userAgent string
	client                 *http.Client
	pace                   *rate.Limiter
	target                 string
}

// answerMax bounds what is read of an answer.
const answerMax = 256 << 10

// addCall adds one call and says whether amoCRM put it on a card: it answers with the calls it
// added and lists the others under errors.
func (a *api) addCall(ctx context.Context, c call) (bool, crm.Result) {
	body, res := a.do(ctx, "calls", "/api/v4/calls", []call{c})
	if res.Outcome != crm.Delivered {
		return false, res
	}
	var answer struct {
		Embedded struct {
			Calls []struct {
				ID        int    `json:"id"`
				RequestID string `json:"request_id"`
			} `json:"calls"`
		} `json:"_embedded"`
	}
	_ = json.Unmarshal(body, &answer) // no calls read is no call added
	for _, added := range answer.Embedded.Calls {
		if added.RequestID == c.RequestID {
			return true, res
		}
	}
	return false, res
}

func (a *api) addUnsorted(ctx context.Context, u unsorted) crm.Result {
	_, res := a.do(ctx, "unsorted", "/api/v4/leads/unsorted/sip", []unsorted{u})
	return res
}

// notify shows the call in progress to user.
func (a *api) notify(ctx context.Context, phone string, user int) crm.Result {
	type popup struct {
		Type        string `json:"type"`
		PhoneNumber string `json:"phone_number"`
		Users       []int  `json:"users"`
	}
	_, res := a.do(ctx, "events", "/api/v2/events/", map[string][]popup{"add": {{Type: "phone_call", PhoneNumber: phone, Users: []int{user}}}})
	return res
}

// do POSTs body as JSON and reads the answer: what a status means is in docs/amocrm.md,
// Errors. The token goes in the Authorization header only, never in an error.
func (a *api) do(ctx context.Context, endpoint, path string, body any) ([]byte, crm.Result) {
	if err := a.pace.Wait(ctx); err != nil {
		return nil, a.count(endpoint, crm.Result{Outcome: crm.Retry, Reason: "error", Error: "amocrm: no turn within the timeout (7 requests a second per account)"})
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, a.count(endpoint, crm.Result{Outcome: crm.Dead, Reason: "mapping", Error: "amocrm: " + err.Error()})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(payload))
	if err != nil {
		return nil, a.count(endpoint, crm.Result{Outcome: crm.Down, Reason: "error", Error: "amocrm: " + err.Error()})
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", a.userAgent)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, a.count(endpoint, crm.Result{Outcome: crm.Retry, Reason: "error", Error: "amocrm: " + err.Error()})
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, answerMax))
	if err != nil {
		return nil, a.count(endpoint, crm.Result{Outcome: crm.Retry, Reason: "error", Error: "amocrm: reading the answer: " + err.Error()})
	}
	return answer, a.count(endpoint, result(resp, answer, path))
}

func (a *api) count(endpoint string, res crm.Result) crm.Result {
	outcome := res.Reason
	if res.Outcome == crm.Delivered {
		outcome = "ok"
	}
	metrics.requests.WithLabelValues(a.target, endpoint, outcome).Inc()
	return res
}

// result is what amoCRM's answer means for the event.
func result(resp *http.Response, answer []byte, path string) crm.Result {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return crm.Result{}
	}
	text := fmt.Sprintf("amoCRM %d on %s: %s", code, path, problem(answer))
	switch {
	case code == http.StatusBadRequest:
		return crm.Result{Outcome: crm.Dead, Reason: "validation", Error: text}
	case code == http.StatusUnauthorized:
		return crm.Result{Outcome: crm.Down, Reason: "auth", Error: text + "; the token is expired or revoked: generate a new long-lived token in the integration and set token"}
	case code == http.StatusPaymentRequired, code == http.StatusForbidden, code == http.StatusNotFound:
		// The account as a whole: unpaid, rights or the IP whitelist, or not an amoCRM address.
		return crm.Result{Outcome: crm.Down, Reason: "refused", Error: text}
	case code == http.StatusTooManyRequests:
		return crm.Result{Outcome: crm.Retry, Reason: "limit", Error: text, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	case code >= 500:
		return crm.Result{Outcome: crm.Retry, Reason: "http_5xx", Error: text}
	}
	return crm.Result{Outcome: crm.Dead, Reason: "refused", Error: text}
}

func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Second
}

// problem is the text of an application/problem+json answer: its detail, and each validation
// error's path, code and detail.
func problem(body []byte) string {
	var p struct {
		Title            string `json:"title"`
		Detail           string `json:"detail"`
		ValidationErrors []struct {
			Errors []struct {
				Code   string `json:"code"`
				Path   string `json:"path"`
				Detail string `json:"detail"`
			} `json:"errors"`
		} `json:"validation-errors"`
	}
	if json.Unmarshal(body, &p) != nil {
		return pbx.ErrorText(string(body))
	}
	parts := []string{p.Detail}
	if p.Detail == "" {
		parts[0] = p.Title
	}
	for _, v := range p.ValidationErrors {
		for _, e := range v.Errors {
			parts = append(parts, strings.TrimSpace(e.Path+": "+e.Code+" "+e.Detail))
		}
	}
	return strings.Join(parts, "; ")
}
