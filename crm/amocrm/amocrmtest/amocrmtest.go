// Package amocrmtest is a fake amoCRM account that follows docs/amocrm.md: Bearer tokens (401
// once revoked), at most 7 requests a second (429 beyond, counted), problem+json errors,
// contacts with phones, calls put on a contact by the last 10 digits of the number (the
// others listed under errors), unsorted call leads, the contact search and the call pop-up.
// It does not deduplicate calls by uniq: amoCRM documents no such thing, so a second add is a
// second call.
package amocrmtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/crm/crmtest"
)

// Call is a call the account took.
type Call struct {
	Direction         string `json:"direction"`
	UniqID            string `json:"uniq"`
	Duration          *int   `json:"duration"`
	Source            string `json:"source"`
	Phone             string `json:"phone"`
	Link              string `json:"link"`
	Status            int    `json:"call_status"`
	Responsible       any    `json:"call_responsible"`
	ResponsibleUserID int    `json:"responsible_user_id"`
	CreatedBy         int    `json:"created_by"`
	CreatedAt         int64  `json:"created_at"`
	RequestID         string `json:"request_id"`
	// ContactID is the contact amoCRM put it on.
	ContactID int `json:"-"`
}

// Unsorted is an unsorted call lead as posted.
type Unsorted struct {
	SourceUID  string         `json:"source_uid"`
	SourceName string         `json:"source_name"`
	PipelineID int            `json:"pipeline_id"`
	RequestID  string         `json:"request_id"`
	Metadata   map[string]any `json:"metadata"`
	Embedded   struct {
		Leads    []map[string]any `json:"leads"`
		Contacts []map[string]any `json:"contacts"`
	} `json:"_embedded"`
}

// Popup is a call pop-up (POST /api/v2/events/).
type Popup struct {
	Type        string `json:"type"`
	PhoneNumber string `json:"phone_number"`
	Users       []int  `json:"users"`
}

type contact struct {
	id          int
	name, phone string
	responsible int
}

// Account is the fake amoCRM at URL.
type Account struct {
	*httptest.Server
	Token string

	mu         sync.Mutex
	revoked    bool
	users      map[int]bool
	contacts   []contact
	calls      []Call
	unsorted   []Unsorted
	popups     []Popup
	arrivals   []time.Time
	overLimit  int
	delay      time.Duration
	authHeader []string
}

// New starts an account whose users are users (ids) and that takes token.
func New(t testing.TB, token string, users ...int) *Account {
	a := &Account{Token: token, users: map[int]bool{}}
	for _, u := range users {
		a.users[u] = true
	}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

// AddContact adds a contact with one phone, responsible user and name; it returns its id.
func (a *Account) AddContact(name, phone string, responsible int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := 1000 + len(a.contacts)
	a.contacts = append(a.contacts, contact{id: id, name: name, phone: phone, responsible: responsible})
	return id
}

// Revoke makes the token answer 401, as amoCRM does once the token is revoked or expires.
func (a *Account) Revoke(revoked bool) {
	a.mu.Lock()
	a.revoked = revoked
	a.mu.Unlock()
}

// Delay makes every answer wait d.
func (a *Account) Delay(d time.Duration) {
	a.mu.Lock()
	a.delay = d
	a.mu.Unlock()
}

// Calls are the calls added, in order, a re-add included.
func (a *Account) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Call(nil), a.calls...)
}

// Unsorted are the unsorted call leads.
func (a *Account) Unsorted() []Unsorted {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Unsorted(nil), a.unsorted...)
}

// Popups are the call pop-ups.
func (a *Account) Popups() []Popup {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Popup(nil), a.popups...)
}

// OverLimit is how many requests came beyond 7 in a second (and got 429).
func (a *Account) OverLimit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.overLimit
}

// AuthHeaders are the Authorization headers of every request.
func (a *Account) AuthHeaders() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.authHeader...)
}

func (a *Account) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	delay := a.delay
	a.authHeader = append(a.authHeader, r.Header.Get("Authorization"))
	now := time.Now()
	recent := 0
	for _, at := range a.arrivals {
		if now.Sub(at) < time.Second {
			recent++
		}
	}
	a.arrivals = append(a.arrivals[max(0, len(a.arrivals)-16):], now)
	limited := recent >= 7
	if limited {
		a.overLimit++
	}
	authorized := !a.revoked && r.Header.Get("Authorization") == "Bearer "+a.Token
	a.mu.Unlock()
	if !crmtest.Delay(r, delay) {
		return
	}
	switch {
	case limited:
		problem(w, http.StatusTooManyRequests, "Too Many Requests", nil)
	case !authorized:
		problem(w, http.StatusUnauthorized, "Unauthorized", nil)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v4/calls":
		a.addCalls(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v4/leads/unsorted/sip":
		a.addUnsorted(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/events/":
		a.addPopups(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v4/contacts":
		a.searchContacts(w, r)
	default:
		problem(w, http.StatusNotFound, "Not Found", nil)
	}
}

type validationError struct {
	Code   string `json:"code"`
	Path   string `json:"path"`
	Detail string `json:"detail"`
}

// problem writes an application/problem+json error; a 400 carries validation errors.
func problem(w http.ResponseWriter, status int, title string, errs []validationError) {
	body := map[string]any{"title": title, "type": fmt.Sprintf("https://httpstatus.es/%d", status), "status": status, "detail": title}
	if errs != nil {
		body["detail"] = "Request validation failed"
		body["validation-errors"] = []map[string]any{{"request_id": "0", "errors": errs}}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func hal(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/hal+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (a *Account) contactOf(phone string) (contact, bool) {
	key := crmtest.Last10(phone)
	for _, c := range a.contacts {
		if key != "" && crmtest.Last10(c.phone) == key {
			return c, true
		}
	}
	return contact{}, false
}

func (a *Account) addCalls(w http.ResponseWriter, r *http.Request) {
	var calls []Call
	if err := json.NewDecoder(r.Body).Decode(&calls); err != nil {
		problem(w, http.StatusBadRequest, "Bad Request", []validationError{{Code: "InvalidType", Path: "", Detail: "The request body must be an array of calls."}})
		return
	}
	var errs []validationError
	for i, c := range calls {
		at := func(field string) string { return fmt.Sprintf("%d.%s", i, field) }
		if c.Direction != "inbound" && c.Direction != "outbound" {
			errs = append(errs, validationError{"NotSupportedChoice", at("direction"), "The value you selected is not a valid choice."})
		}
		for field, v := range map[string]string{"source": c.Source, "phone": c.Phone} {
			if v == "" {
				errs = append(errs, validationError{"NotBlank", at(field), "This value should not be blank."})
			}
		}
		if c.Duration == nil {
			errs = append(errs, validationError{"NotBlank", at("duration"), "This value should not be blank."})
		}
		if c.ResponsibleUserID != 0 && !a.users[c.ResponsibleUserID] {
			errs = append(errs, validationError{"NotSupportedChoice", at("responsible_user_id"), "The value you selected is not a valid choice."})
		}
	}
	if errs != nil {
		problem(w, http.StatusBadRequest, "Bad Request", errs)
		return
	}
	a.mu.Lock()
	var added, unattached []map[string]any
	for _, c := range calls {
		ct, ok := a.contactOf(c.Phone)
		if !ok {
			unattached = append(unattached, map[string]any{"request_id": c.RequestID, "status": 404, "title": "Entity not found", "detail": "No contact or company has this phone"})
			continue
		}
		c.ContactID = ct.id
		a.calls = append(a.calls, c)
		added = append(added, map[string]any{
			"id": 5000 + len(a.calls), "entity_id": ct.id, "entity_type": "contact", "account_id": 1, "request_id": c.RequestID,
			"_embedded": map[string]any{"entity": map[string]any{"id": ct.id, "_links": map[string]any{"self": map[string]string{"href": fmt.Sprintf("%s/api/v4/contacts/%d", a.URL, ct.id)}}}},
		})
	}
	a.mu.Unlock()
	body := map[string]any{"_total_items": len(added), "_embedded": map[string]any{"calls": added}}
	if unattached != nil {
		body["errors"] = unattached
	}
	hal(w, http.StatusOK, body)
}

func (a *Account) addUnsorted(w http.ResponseWriter, r *http.Request) {
	var leads []Unsorted
	if err := json.NewDecoder(r.Body).Decode(&leads); err != nil {
		problem(w, http.StatusBadRequest, "Bad Request", []validationError{{Code: "InvalidType", Detail: "The request body must be an array."}})
		return
	}
	var errs []validationError
	for i, u := range leads {
		if u.SourceUID == "" || u.SourceName == "" {
			errs = append(errs, validationError{"NotBlank", fmt.Sprintf("%d.source_uid", i), "This value should not be blank."})
		}
		if u.Metadata["phone"] == nil || u.Metadata["uniq"] == nil {
			errs = append(errs, validationError{"NotBlank", fmt.Sprintf("%d.metadata", i), "This value should not be blank."})
		}
	}
	a.mu.Lock()
	for i, u := range leads {
		for _, prev := range a.unsorted {
			if prev.Metadata["uniq"] == u.Metadata["uniq"] {
				errs = append(errs, validationError{"Duplicate", fmt.Sprintf("%d.metadata.uniq", i), "This call is already in unsorted."})
			}
		}
	}
	if errs != nil {
		a.mu.Unlock()
		problem(w, http.StatusBadRequest, "Bad Request", errs)
		return
	}
	var out []map[string]any
	for _, u := range leads {
		a.unsorted = append(a.unsorted, u)
		n := len(a.unsorted)
		out = append(out, map[string]any{
			"uid": fmt.Sprintf("unsorted-%d", n), "request_id": u.RequestID,
			"_embedded": map[string]any{"leads": []map[string]int{{"id": 7000 + n}}, "contacts": []map[string]int{{"id": 8000 + n}}},
		})
	}
	a.mu.Unlock()
	hal(w, http.StatusOK, map[string]any{"_total_items": len(out), "_embedded": map[string]any{"unsorted": out}})
}

func (a *Account) addPopups(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Add []Popup `json:"add"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Add) == 0 {
		problem(w, http.StatusBadRequest, "Bad Request", []validationError{{Code: "NotBlank", Path: "add", Detail: "This value should not be blank."}})
		return
	}
	a.mu.Lock()
	a.popups = append(a.popups, body.Add...)
	a.mu.Unlock()
	hal(w, http.StatusAccepted, map[string]any{})
}

// searchContacts is GET /api/v4/contacts?query=: contacts whose phone has the query's last 10
// digits, or 204 with no body.
func (a *Account) searchContacts(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	ct, ok := a.contactOf(r.URL.Query().Get("query"))
	a.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	hal(w, http.StatusOK, map[string]any{
		"_page": 1,
		"_embedded": map[string]any{"contacts": []map[string]any{{
			"id": ct.id, "name": ct.name, "responsible_user_id": ct.responsible, "group_id": 0, "account_id": 1,
			"custom_fields_values": []map[string]any{{"field_code": "PHONE", "values": []map[string]string{{"value": ct.phone, "enum_code": "WORK"}}}},
		}}},
	})
}
