package lookup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/pbxbridge/pbxbridge/event"
)

// bitrix24 asks a Bitrix24 portal through an inbound webhook
// (https://<portal>/rest/<user id>/<secret>/): the duplicate search by phone finds a contact
// or a company, its card gives the name and the responsible user, and the user's inner number
// (UF_PHONE_INNER) is the extension (docs/configuration.md, Contact lookup). The URL holds
// the webhook's secret, so it never appears in an error.
type bitrix24 struct {
	base   string
	client *http.Client
}

func newBitrix24(u string, client *http.Client) (*bitrix24, error) {
	if !strings.Contains(u, "/rest/") {
		return nil, errors.New("lookup bitrix24: the URL is the portal's inbound webhook, https://<portal>/rest/<user id>/<secret>/ (Developer resources → Other → Inbound webhook, scopes crm and user)")
	}
	return &bitrix24{base: strings.TrimSuffix(u, "/") + "/", client: client}, nil
}

func (b *bitrix24) ask(ctx context.Context, _ event.Origin, phone, _ string) (Contact, error) {
	var found map[string][]json.Number
	if err := b.call(ctx, "crm.duplicate.findbycomm", map[string]any{"type": "PHONE", "values": []string{phone}}, &found); err != nil {
		return Contact{}, err
	}
	var card struct {
		Name       string `json:"NAME"`
		LastName   string `json:"LAST_NAME"`
		Title      string `json:"TITLE"`
		AssignedBy string `json:"ASSIGNED_BY_ID"`
	}
	switch {
	case len(found["CONTACT"]) > 0:
		if err := b.call(ctx, "crm.contact.get", map[string]any{"id": found["CONTACT"][0]}, &card); err != nil {
			return Contact{}, err
		}
	case len(found["COMPANY"]) > 0:
		if err := b.call(ctx, "crm.company.get", map[string]any{"id": found["COMPANY"][0]}, &card); err != nil {
			return Contact{}, err
		}
	default:
		return Contact{}, nil
	}
	contact := Contact{Name: strings.TrimSpace(card.Name + " " + card.LastName)}
	if contact.Name == "" {
		contact.Name = strings.TrimSpace(card.Title)
	}
	if card.AssignedBy == "" {
		return contact, nil
	}
	var users []struct {
		Inner string `json:"UF_PHONE_INNER"`
	}
	if err := b.call(ctx, "user.get", map[string]any{"FILTER": map[string]string{"ID": card.AssignedBy}}, &users); err != nil {
		return Contact{}, err
	}
	if len(users) > 0 {
		contact.Responsible = strings.TrimSpace(users[0].Inner)
	}
	return contact, nil
}

// call runs a REST method and reads its result into out: {"result": …} or, on failure,
// {"error": …, "error_description": …}.
func (b *bitrix24) call(ctx context.Context, method string, params any, out any) error {
	body, _ := json.Marshal(params)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+method+".json", bytes.NewReader(body))
	if err != nil {
		return errors.New("lookup bitrix24: bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	status, answer, err := send(b.client, req)
	if err != nil {
		return fmt.Errorf("lookup bitrix24 %s: no answer", method) // the error would name the URL
	}
	var reply struct {
		Result json.RawMessage `json:"result"`
		Error  string          `json:"error"`
	}
	if json.Unmarshal(answer, &reply) != nil || status != http.StatusOK || reply.Error != "" {
		return fmt.Errorf("lookup bitrix24 %s: HTTP %d %s", method, status, reply.Error)
	}
	if string(reply.Result) == "[]" {
		return nil // nothing found (crm.duplicate.findbycomm answers a list then, not an object)
	}
	return json.Unmarshal(reply.Result, out)
}
