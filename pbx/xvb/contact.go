package xvb

import "net/url"

// MakeCallForm is the body of a click-to-call request to the tenant's …/commoncrm/<access_code>
// URL: from is the employee's extension, to the client's number, both as XVB should see them.
func MakeCallForm(token, from, to string) url.Values {
	return url.Values{"cmd": {"makeCall"}, "token": {token}, "from": {from}, "to": {to}}
}
