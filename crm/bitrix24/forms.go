package bitrix24

import (
	"net/url"
	"strconv"
	"time"
)

// Auth is the auth[…] part of what a portal posts to an application.
type Auth struct {
	Domain           string // the portal's host
	MemberID         string
	ApplicationToken string
	// The token pair, only in an installation.
	AccessToken, RefreshToken string
	ExpiresIn                 time.Duration
	ClientEndpoint            string // https://<portal>/rest/
	ServerEndpoint            string // https://oauth.bitrix.info/rest/
}

func (a Auth) form(event string) url.Values {
	f := url.Values{"event": {event}, "ts": {strconv.FormatInt(time.Now().Unix(), 10)},
		"auth[domain]": {a.Domain}, "auth[member_id]": {a.MemberID}, "auth[application_token]": {a.ApplicationToken},
		"auth[client_endpoint]": {a.ClientEndpoint}, "auth[server_endpoint]": {a.ServerEndpoint}}
	if a.AccessToken != "" {
		f.Set("auth[access_token]", a.AccessToken)
		f.Set("auth[refresh_token]", a.RefreshToken)
		f.Set("auth[expires]", strconv.FormatInt(time.Now().Add(a.ExpiresIn).Unix(), 10))
		f.Set("auth[expires_in]", strconv.Itoa(int(a.ExpiresIn/time.Second)))
		f.Set("auth[scope]", "telephony,crm,user")
		f.Set("auth[status]", "L")
	}
	return f
}

// InstallForm is the installation callback a portal posts when the admin saves a local
// application (ONAPPINSTALL): `pbxbridge simulate bitrix24` and the test portal send it.
func InstallForm(a Auth) url.Values {
	f := a.form(eventInstall)
	f.Set("data[VERSION]", "1")
	f.Set("data[ACTIVE]", "Y")
	f.Set("data[INSTALLED]", "Y")
	f.Set("data[LANGUAGE_ID]", "ru")
	return f
}

// UninstallForm is ONAPPUNINSTALL: no tokens, they are revoked.
func UninstallForm(a Auth) url.Values {
	a.AccessToken = ""
	f := a.form(eventUninstall)
	f.Set("data[CLEAN]", "0")
	return f
}

// CallStart is a click on a number in Bitrix24, a call the portal has registered already.
type CallStart struct {
	CallID, UserID, Phone, Line string
}

// CallStartForm is ONEXTERNALCALLSTART for c.
func CallStartForm(a Auth, c CallStart) url.Values {
	a.AccessToken = ""
	f := a.form(eventCallStart)
	f.Set("event_handler_id", "1")
	for k, v := range map[string]string{"PHONE_NUMBER": c.Phone, "PHONE_NUMBER_INTERNATIONAL": c.Phone, "EXTENSION": "",
		"USER_ID": c.UserID, "CALL_LIST_ID": "0", "LINE_NUMBER": c.Line, "IS_MOBILE": "0", "CALL_ID": c.CallID,
		"CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": "0"} {
		f.Set("data["+k+"]", v)
	}
	return f
}
