package xvb

import (
	"encoding/json"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// CallAnswer is XVB's answer to makeCall. Its body and error codes are not documented (docs/xvb.md,
// Click-to-call: makeCall): a 2xx is taken as accepted unless the body is a JSON object with an
// "error"; anything else is passed on with XVB's status and the text it sent.
type CallAnswer struct {
	HTTPStatus int
	// Error is XVB's error text: a JSON "error" (or "message"), else the start of the body.
	Error string
}

// ReadCallAnswer reads XVB's answer to makeCall.
func ReadCallAnswer(status int, body []byte) CallAnswer {
	a := CallAnswer{HTTPStatus: status}
	failed := status/100 != 2
	names := []string{"error"}
	if failed {
		names = append(names, "message")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil {
		for _, name := range names {
			if s := pbx.Scalar(obj[name], true); s != "" && s != "0" {
				a.Error = pbx.ErrorText(s)
				return a
			}
		}
	}
	if failed {
		a.Error = pbx.ErrorText(string(body))
	}
	return a
}

// Accepted reports whether XVB took the call.
func (a CallAnswer) Accepted() bool { return a.HTTPStatus/100 == 2 && a.Error == "" }

// Status is the HTTP status with which the gateway answers the CRM (pbx.CallAnswerStatus).
func (a CallAnswer) Status() int { return pbx.CallAnswerStatus(a.HTTPStatus, a.Accepted()) }
