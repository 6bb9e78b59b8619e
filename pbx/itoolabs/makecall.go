package itoolabs

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// MakeCallForm is the body of a click-to-call POST to the account's api_url (docs/itoolabs.md,
// Click-to-call): user is the employee (login or extension) whose phone rings first, phone the
// number to call, clid the caller id to show, left out when "".
func MakeCallForm(token, user, phone, clid string) url.Values {
	form := url.Values{"cmd": {"makeCall"}, "token": {token}, "user": {user}, "phone": {phone}}
	if clid != "" {
		form.Set("clid", clid)
	}
	return form
}

// CallAnswer is the PBX's answer to makeCall: {"uuid":…} when it took the call, 400
// {"error":"Invalid parameters"} or 401 {"error":"Invalid token"} when it did not.
type CallAnswer struct {
	HTTPStatus int
	UUID       string // the call's id, when the PBX gave one
	Error      string // why it was refused, for the CRM and the log; "" when accepted
}

// ReadCallAnswer reads the PBX's answer to makeCall. A 2xx without an error is accepted even
// without a uuid: refusing a call the PBX may be placing would let the CRM place it twice.
func ReadCallAnswer(status int, body []byte) CallAnswer {
	a := CallAnswer{HTTPStatus: status}
	var obj struct{ UUID, Error json.RawMessage }
	if json.Unmarshal(body, &obj) == nil {
		a.UUID, a.Error = pbx.Scalar(obj.UUID, false), pbx.ErrorText(pbx.Scalar(obj.Error, false))
	}
	if status/100 == 2 {
		return a
	}
	if a.Error == "" {
		a.Error = cmp.Or(pbx.ErrorText(string(body)), http.StatusText(status))
	}
	switch status {
	case http.StatusUnauthorized:
		a.Error = fmt.Sprintf("the PBX refused the account's token (401 %s): check token", a.Error)
	case http.StatusBadRequest:
		a.Error = fmt.Sprintf("the PBX refused user or phone (400 %s)", a.Error)
	}
	return a
}

// Accepted reports whether the PBX took the call.
func (a CallAnswer) Accepted() bool { return a.HTTPStatus/100 == 2 && a.Error == "" }

// Status is the HTTP status with which the gateway answers the CRM (pbx.CallAnswerStatus).
func (a CallAnswer) Status() int { return pbx.CallAnswerStatus(a.HTTPStatus, a.Accepted()) }
