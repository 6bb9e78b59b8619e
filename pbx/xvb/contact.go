package xvb

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/pbxbridge/pbxbridge/event"
)

// ContactQuery is what the gateway POSTs to the CRM's lookup URL. phone goes out in E.164 when it
// parses in the default region; a handler configured for another region passes
// event.Number(phone, region), which this leaves as it is.
func ContactQuery(account, phone string) []byte {
	return marshal(struct {
		PBX     string `json:"pbx"`
		Account string `json:"account"`
		Phone   string `json:"phone"`
	}{"xvb", account, event.Number(phone, "")})
}

// contactAnswer is the PBX's answer; {} means "not found" to XVB, so empty fields are left out.
type contactAnswer struct {
	ContactName string `json:"contact_name,omitempty"`
	Responsible string `json:"responsible,omitempty"`
}

// ContactAnswer turns the CRM's answer into the PBX's: strict JSON with Cyrillic as raw UTF-8,
// {} when the CRM did not know the number or answered garbage. Each field is taken on its own
// merit, so one malformed field does not lose the other; responsible may be a number (→ string)
// because XVB wants an extension string and CRMs often store extensions as numbers.
func ContactAnswer(crmBody []byte) []byte {
	var in struct {
		Name        json.RawMessage `json:"name"`
		Responsible json.RawMessage `json:"responsible"`
	}
	var out contactAnswer
	if json.Unmarshal(crmBody, &in) == nil {
		out.ContactName = scalar(in.Name, false)
		out.Responsible = scalar(in.Responsible, true)
	}
	return marshal(out)
}

// scalar is a JSON string (or, if numbers are allowed, a number in its literal form), trimmed;
// "" for anything else.
func scalar(raw json.RawMessage, numbers bool) string {
	var v any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v)
	case json.Number:
		if numbers {
			return v.String()
		}
	}
	return ""
}

// MakeCallForm is the body of a click-to-call request to the tenant's …/commoncrm/<access_code>
// URL: from is the employee's extension, to the client's number, both as XVB should see them.
func MakeCallForm(token, from, to string) url.Values {
	return url.Values{"cmd": {"makeCall"}, "token": {token}, "from": {from}, "to": {to}}
}
