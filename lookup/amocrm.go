package lookup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/time/rate"

	"github.com/pbxbridge/pbxbridge/crm/amocrm"
	"github.com/pbxbridge/pbxbridge/event"
)

// amoCRM asks an amoCRM account: its contact search by phone gives the name and the
// responsible user, whose extension is the users table's (amoCRM keeps no extensions).
// Requests share the account's pace with its targets (docs/amocrm.md, Limits).
type amoCRM struct {
	base, token string
	extensions  map[int]string // amoCRM user id → extension
	client      *http.Client
	pace        *rate.Limiter
}

func newAmoCRM(u, token string, users map[string]string, client *http.Client) (*amoCRM, error) {
	if token == "" {
		return nil, errors.New("lookup amocrm: token is required: the private integration's long-lived token, as the amocrm target's")
	}
	table, err := amocrm.Users(users)
	if err != nil {
		return nil, fmt.Errorf("lookup amocrm: %w", err)
	}
	a := &amoCRM{base: strings.TrimSuffix(u, "/"), token: token, extensions: map[int]string{}, client: client}
	for ext, id := range table {
		a.extensions[id] = ext
	}
	a.pace = amocrm.Pace(a.base)
	return a, nil
}

func (a *amoCRM) ask(ctx context.Context, _ event.Origin, phone, _ string) (Contact, error) {
	if err := a.pace.Wait(ctx); err != nil {
		return Contact{}, err
	}
	// amoCRM matches a number by its digits, whatever way it was written in the card.
	query := strings.TrimPrefix(phone, "+")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/api/v4/contacts?limit=1&query="+url.QueryEscape(query), nil)
	if err != nil {
		return Contact{}, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	status, body, err := send(a.client, req)
	switch {
	case err != nil:
		return Contact{}, err
	case status == http.StatusNoContent:
		return Contact{}, nil
	case status != http.StatusOK:
		return Contact{}, fmt.Errorf("lookup amocrm: HTTP %d", status)
	}
	var answer struct {
		Embedded struct {
			Contacts []struct {
				Name        string `json:"name"`
				Responsible int    `json:"responsible_user_id"`
			} `json:"contacts"`
		} `json:"_embedded"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return Contact{}, err
	}
	if len(answer.Embedded.Contacts) == 0 {
		return Contact{}, nil
	}
	c := answer.Embedded.Contacts[0]
	return Contact{Name: strings.TrimSpace(c.Name), Responsible: a.extensions[c.Responsible]}, nil
}
