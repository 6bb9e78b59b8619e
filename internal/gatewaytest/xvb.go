package gatewaytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// XVBAPI is XVB's CommonCRM click-to-call on 127.0.0.1 (docs/xvb.md, Click-to-call: makeCall):
// a form POST to /commoncrm/<access code> with cmd=makeCall, token, from and to. The answer is
// not documented; this one answers 200 {"status":"ok"}, 403 to a wrong token, or what Answer
// sets.
type XVBAPI struct {
	*httptest.Server
	code string

	mu     sync.Mutex
	calls  []url.Values
	status int
	body   string
}

// NewXVBAPI serves tenant code, which takes token.
func NewXVBAPI(t testing.TB, code, token string) *XVBAPI {
	f := &XVBAPI{code: code, status: http.StatusOK, body: `{"status":"ok"}`}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/commoncrm/"+code ||
			r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "not a CommonCRM request", http.StatusBadRequest)
			return
		}
		raw, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(raw))
		if err != nil || form.Get("cmd") != "makeCall" || form.Get("from") == "" || form.Get("to") == "" || len(form) != 4 {
			http.Error(w, "bad makeCall", http.StatusBadRequest)
			return
		}
		if form.Get("token") != token {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"error":"bad token"}`)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, form)
		status, body := f.status, f.body
		f.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

// APIURL is the tenant's api_url.
func (f *XVBAPI) APIURL() string { return f.URL + "/commoncrm/" + f.code }

// Received are the makeCall forms taken so far.
func (f *XVBAPI) Received() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.calls...)
}

// Answer sets what makeCall is answered from now on.
func (f *XVBAPI) Answer(status int, body string) {
	f.mu.Lock()
	f.status, f.body = status, body
	f.mu.Unlock()
}
