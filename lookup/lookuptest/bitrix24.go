// Package lookuptest holds a fake of what the contact lookup asks: a Bitrix24 portal's REST
// methods through an inbound webhook. (amoCRM's fake is crm/amocrm/amocrmtest.)
package lookuptest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bitrix24 is a portal with contacts, companies and users, answering
// crm.duplicate.findbycomm, crm.contact.get, crm.company.get and user.get at
// WebhookURL() as docs/configuration.md describes them; another secret gets 401 NO_AUTH_FOUND.
type Bitrix24 struct {
	*httptest.Server
	secret string

	mu       sync.Mutex
	cards    map[string][]card // CONTACT, COMPANY
	inner    map[string]string // user id → UF_PHONE_INNER
	delay    time.Duration
	requests []string // methods called
}

type card struct {
	id, name, lastName, title, phone, assignedBy string
}

// NewBitrix24 starts a portal whose webhook has secret.
func NewBitrix24(t testing.TB, secret string) *Bitrix24 {
	b := &Bitrix24{secret: secret, cards: map[string][]card{}, inner: map[string]string{}}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.Close)
	return b
}

// WebhookURL is the inbound webhook of user 1.
func (b *Bitrix24) WebhookURL() string { return b.URL + "/rest/1/" + b.secret + "/" }

// AddContact adds a contact with one phone and its responsible user.
func (b *Bitrix24) AddContact(name, lastName, phone, assignedBy string) {
	b.add("CONTACT", card{name: name, lastName: lastName, phone: phone, assignedBy: assignedBy})
}

// AddCompany adds a company with one phone and its responsible user.
func (b *Bitrix24) AddCompany(title, phone, assignedBy string) {
	b.add("COMPANY", card{title: title, phone: phone, assignedBy: assignedBy})
}

// AddUser gives user id the inner number inner (UF_PHONE_INNER).
func (b *Bitrix24) AddUser(id, inner string) {
	b.mu.Lock()
	b.inner[id] = inner
	b.mu.Unlock()
}

// Delay makes every answer wait d.
func (b *Bitrix24) Delay(d time.Duration) {
	b.mu.Lock()
	b.delay = d
	b.mu.Unlock()
}

// Requests are the methods called, in order.
func (b *Bitrix24) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

func (b *Bitrix24) add(typ string, c card) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c.id = fmt.Sprint(100 + len(b.cards["CONTACT"]) + len(b.cards["COMPANY"]))
	b.cards[typ] = append(b.cards[typ], c)
}

func last10(phone string) string {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, phone)
	return digits[max(0, len(digits)-10):]
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (b *Bitrix24) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // rest, user, secret, method
	if len(parts) != 4 || parts[0] != "rest" || parts[2] != b.secret {
		reply(w, http.StatusUnauthorized, map[string]string{"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"})
		return
	}
	method := strings.TrimSuffix(parts[3], ".json")
	var params struct {
		Type   string            `json:"type"`
		Values []string          `json:"values"`
		ID     json.Number       `json:"id"`
		Filter map[string]string `json:"FILTER"`
	}
	if err := json.NewDecoder(r.Body).Decode(&params); err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "INVALID_REQUEST", "error_description": "Body is not JSON"})
		return
	}
	b.mu.Lock()
	b.requests = append(b.requests, method)
	delay := b.delay
	var result any
	status := http.StatusOK
	switch method {
	case "crm.duplicate.findbycomm":
		found := map[string][]int{}
		for _, v := range params.Values {
			for typ, cards := range b.cards {
				for _, c := range cards {
					if params.Type == "PHONE" && last10(c.phone) == last10(v) {
						var id int
						fmt.Sscan(c.id, &id)
						found[typ] = append(found[typ], id)
					}
				}
			}
		}
		result = found
		if len(found) == 0 {
			result = []int{}
		}
	case "crm.contact.get", "crm.company.get":
		typ := strings.ToUpper(strings.Split(method, ".")[1])
		status, result = http.StatusBadRequest, nil
		for _, c := range b.cards[typ] {
			if c.id == params.ID.String() {
				status = http.StatusOK
				if typ == "CONTACT" {
					result = map[string]string{"ID": c.id, "NAME": c.name, "LAST_NAME": c.lastName, "SECOND_NAME": "", "ASSIGNED_BY_ID": c.assignedBy}
				} else {
					result = map[string]string{"ID": c.id, "TITLE": c.title, "ASSIGNED_BY_ID": c.assignedBy}
				}
			}
		}
	case "user.get":
		users := []map[string]string{}
		if inner, ok := b.inner[params.Filter["ID"]]; ok {
			users = append(users, map[string]string{"ID": params.Filter["ID"], "ACTIVE": "true", "UF_PHONE_INNER": inner})
		}
		result = users
	default:
		status = http.StatusNotFound
	}
	b.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch status {
	case http.StatusOK:
		reply(w, status, map[string]any{"result": result, "time": map[string]any{"start": 1733300000.1, "duration": 0.01}})
	case http.StatusNotFound:
		reply(w, status, map[string]string{"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"})
	default:
		reply(w, status, map[string]string{"error": "", "error_description": "Not found"})
	}
}
