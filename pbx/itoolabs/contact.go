package itoolabs

import (
	"encoding/json"
	"strings"

	"github.com/pbxbridge/pbxbridge/event"
)

// ContactQuery is what the gateway POSTs to the CRM's lookup URL for a cmd=contact
// (docs/itoolabs.md, The contact lookup): the CRM contract every PBX shares, plus the call's id,
// which this PBX sends with the question. phone goes out in E.164 when it parses in the default
// region; a handler configured for another region passes event.Number(phone, region).
func ContactQuery(account, phone, callID string) []byte {
	return compactJSON(struct {
		PBX     string `json:"pbx"`
		Account string `json:"account"`
		Phone   string `json:"phone"`
		CallID  string `json:"call_id,omitempty"`
	}{"itoolabs", account, event.Number(phone, ""), strings.TrimSpace(callID)})
}

// contactAnswer is the answer to the PBX; {} is "not found", so empty fields are left out.
type contactAnswer struct {
	ContactName string `json:"contact_name,omitempty"`
	Responsible string `json:"responsible,omitempty"`
}

// ContactAnswer turns the CRM's answer ({"name":…,"responsible":…}) into the PBX's: strict JSON,
// Cyrillic as raw UTF-8, {} when the CRM did not know the number or answered garbage. Each field
// stands on its own, so a malformed one does not lose the other. responsible is a login, an
// extension or a direct number to this PBX, so a CRM's number is taken as its digits.
func ContactAnswer(crmBody []byte) []byte {
	var in struct{ Name, Responsible json.RawMessage }
	var out contactAnswer
	if json.Unmarshal(crmBody, &in) == nil {
		out.ContactName = jsonText(in.Name, false)
		out.Responsible = jsonText(in.Responsible, true)
	}
	return compactJSON(out)
}

// jsonText is a JSON string, trimmed, or (when numbers are text too) a number as written; ""
// for anything else.
func jsonText(raw json.RawMessage, numbers bool) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if numbers && json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
