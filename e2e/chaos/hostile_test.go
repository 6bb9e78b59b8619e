package chaos

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// rawRequest is an HTTP/1.1 request to host as bytes: request line, headers as given (so they
// can be malformed), an empty line, body.
func rawRequest(host, method, target string, headers []string, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// post is a well-formed request with Content-Length, closing the connection after the answer.
func post(host, target, contentType, body string, headers ...string) []byte {
	return rawRequest(host, http.MethodPost, target, append([]string{
		"Content-Type: " + contentType, fmt.Sprintf("Content-Length: %d", len(body)), "Connection: close"}, headers...), body)
}

// exchangeResult is what a client saw of one connection.
type exchangeResult struct {
	statuses []int         // answers read, in order
	closed   bool          // the gateway closed the connection
	took     time.Duration // until the first answer, or the close
}

// exchange sends req over a new connection to addr — at once, or its first burst bytes at
// once and the rest one byte per trickle — and reads answers until the gateway closes the
// connection or wait passes. halfClose ends the client's side after the last byte (a
// truncated body).
func exchange(t *testing.T, addr string, req []byte, burst int, trickle time.Duration, halfClose bool, wait time.Duration) exchangeResult {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		if trickle == 0 {
			burst = len(req)
		}
		if _, err := conn.Write(req[:burst]); err != nil {
			return
		}
		for i := burst; i < len(req); i++ {
			select {
			case <-stop:
				return
			case <-time.After(trickle): // the slowloris client's pace
			}
			if _, err := conn.Write(req[i : i+1]); err != nil {
				return
			}
		}
		if halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	_ = conn.SetReadDeadline(start.Add(wait))
	var r exchangeResult
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			r.closed = !(errors.As(err, &ne) && ne.Timeout())
			if r.took == 0 {
				r.took = time.Since(start)
			}
			return r
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r.took == 0 {
			r.took = time.Since(start)
		}
		r.statuses = append(r.statuses, resp.StatusCode)
	}
}

// signedForm is a Mango form body with the real key and a sign by salt.
func signedForm(json, salt string) string { return mango.FormBody(mangoKey, salt, json) }

// xvbIncoming is an authentic XVB INCOMING of call, as a form.
func xvbIncoming(call string) string {
	return url.Values{"access_code": {xvbAccessCode}, "cmd": {"event"}, "event": {"INCOMING"}, "type": {"in"},
		"callid": {call}, "phone": {"79201234567"}}.Encode()
}

func gzipped(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = io.WriteString(w, s)
	_ = w.Close()
	return b.String()
}

func utf16LE(s string) string {
	var b bytes.Buffer
	b.WriteString("\xff\xfe")
	for _, u := range utf16.Encode([]rune(s)) {
		b.WriteByte(byte(u))
		b.WriteByte(byte(u >> 8))
	}
	return b.String()
}

// hostile is one hostile request. want is the status of its one answer; 0 means the gateway
// may instead cut the connection (slowloris). logged says pbx_webhook ran and logs the
// refusal; requests that Go's HTTP server refuses before any handler runs are answered 400
// and logged by nobody.
type hostile struct {
	name      string
	req       func(path string) []byte // path: a distinct webhook path for this case
	pbx       string                   // mango | xvb: which webhook
	want      int
	logged    bool
	trickle   time.Duration // send one byte per trickle: the headers, or with slowBody the body
	slowBody  bool
	halfClose bool
	wait      time.Duration // how long to read answers; default 2 s
	within    time.Duration // the answer or the cut must come this soon
}

// Hostile input of every shape, each carrying the account's real secrets where the PBX would
// (Mango's key in the body, XVB's key in the URL): a 4xx or a cut connection, a refusal in the
// log where pbx_webhook sees the request, and nothing queued — a final good message is the
// only event either CRM receives.
func TestChaosHostileInput(t *testing.T) {
	h := start(t, baseConfig)
	host := strings.TrimPrefix(h.g.URL, "http://")
	mangoJSON := `{"entry_id":"HOSTILE","call_id":"L","timestamp":` + strconv.FormatInt(time.Now().Unix(), 10) + `,"seq":1,"call_state":"Appeared","location":"abonent","from":{"number":"79123456789"},"to":{"extension":"101"}}`
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	huge := "1" + strings.Repeat("0", 400)
	smuggled := string(post(host, "/hooks/xvb?key="+xvbKey, formType, xvbIncoming("SMUGGLED")))
	chunkedThenSmuggled := "0\r\n\r\n" + smuggled

	cases := []hostile{
		// Size.
		{name: "mango oversized", pbx: "mango", want: 413, logged: true, req: func(p string) []byte {
			return post(host, p, formType, signedForm(mangoJSON, mangoSalt)+"&pad="+strings.Repeat("x", 70<<10))
		}},
		{name: "xvb oversized", pbx: "xvb", want: 413, logged: true, req: func(p string) []byte {
			return post(host, p, "application/json", `{"access_code":"10019","cmd":"event","pad":"`+strings.Repeat("x", 70<<10)+`"}`)
		}},
		// Truncated: the body ends before Content-Length says, or the JSON ends mid-way.
		{name: "mango truncated body", pbx: "mango", want: 400, logged: true, halfClose: true, req: func(p string) []byte {
			body := signedForm(mangoJSON, mangoSalt)
			return rawRequest(host, http.MethodPost, p, []string{"Content-Type: " + formType, fmt.Sprintf("Content-Length: %d", len(body))}, body[:len(body)/2])
		}},
		{name: "xvb truncated json", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return post(host, p, "application/json", `{"access_code":"10019","cmd":"event","event":"INCOMING","callid":"TRUNC`)
		}},
		// Wrongly encoded.
		{name: "mango bad escape", pbx: "mango", want: 400, logged: true, req: func(p string) []byte {
			return post(host, p, formType, "vpbx_api_key="+mangoKey+"&json=%zz%")
		}},
		{name: "mango multipart", pbx: "mango", want: 400, logged: true, req: func(p string) []byte {
			body := "--b\r\nContent-Disposition: form-data; name=\"vpbx_api_key\"\r\n\r\n" + mangoKey + "\r\n--b\r\nContent-Disposition: form-data; name=\"json\"\r\n\r\n" + mangoJSON + "\r\n--b--\r\n"
			return post(host, p, "multipart/form-data; boundary=b", body)
		}},
		{name: "xvb utf-16 json", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return post(host, p, "application/json", utf16LE(`{"access_code":"10019","cmd":"event","event":"INCOMING","callid":"UTF16"}`))
		}},
		{name: "xvb gzip body", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return post(host, p, formType, gzipped(xvbIncoming("GZIP")), "Content-Encoding: gzip")
		}},
		// Deeply nested JSON.
		{name: "mango deep json unsigned", pbx: "mango", want: 401, logged: true, req: func(p string) []byte {
			return post(host, p, formType, signedForm(`{"entry_id":`+deep(5000)+`}`, "not-the-salt"))
		}},
		{name: "xvb deep json", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return post(host, p, "application/json", `{"access_code":"10019","cmd":"event","event":`+deep(20000)+`}`)
		}},
		// Huge numbers.
		{name: "mango huge numbers unsigned", pbx: "mango", want: 401, logged: true, req: func(p string) []byte {
			return post(host, p, formType, signedForm(`{"entry_id":`+huge+`,"timestamp":1e999999999,"seq":-`+huge+`}`, "not-the-salt"))
		}},
		{name: "xvb huge numbers", pbx: "xvb", want: 401, logged: true, req: func(p string) []byte {
			return post(host, p, "application/json", `{"access_code":1e999999999,"cmd":"event","event":"COMPLETED","duration":`+huge+`}`)
		}},
		// Invalid UTF-8.
		{name: "mango invalid utf-8 unsigned", pbx: "mango", want: 401, logged: true, req: func(p string) []byte {
			return post(host, p, formType, signedForm(`{"entry_id":"\xff\xfe\xfd","from":{"number":"\xc3\x28"}}`, "not-the-salt"))
		}},
		{name: "xvb invalid utf-8", pbx: "xvb", want: 401, logged: true, req: func(p string) []byte {
			return post(host, p, formType, "access_code=1001\xff&cmd=\xfe\xfd&event=INCOMING&callid=BAD\xc3\x28")
		}},
		{name: "xvb wrong method", pbx: "xvb", want: 405, logged: true, req: func(p string) []byte {
			return rawRequest(host, http.MethodGet, p, []string{"Connection: close"}, "")
		}},
		// Header smuggling: the gateway must read each as one request, refuse it, and never
		// run the authentic XVB message hidden behind it.
		{name: "content-length and chunked", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return rawRequest(host, http.MethodPost, p, []string{"Content-Type: " + formType,
				fmt.Sprintf("Content-Length: %d", len(chunkedThenSmuggled)), "Transfer-Encoding: chunked"}, chunkedThenSmuggled)
		}},
		{name: "two content-lengths", pbx: "xvb", want: 400, req: func(p string) []byte {
			return rawRequest(host, http.MethodPost, p, []string{"Content-Type: " + formType, "Content-Length: 5",
				fmt.Sprintf("Content-Length: %d", len(chunkedThenSmuggled))}, chunkedThenSmuggled)
		}},
		{name: "obs-fold hides chunked", pbx: "xvb", want: 400, logged: true, req: func(p string) []byte {
			return rawRequest(host, http.MethodPost, p, []string{"Content-Type: " + formType,
				fmt.Sprintf("Content-Length: %d", len(chunkedThenSmuggled)), "X-Note: a", " Transfer-Encoding: chunked"}, chunkedThenSmuggled)
		}},
		{name: "obs-fold first header", pbx: "xvb", want: 400, req: func(p string) []byte {
			return rawRequest(host, http.MethodPost, p, []string{" Transfer-Encoding: chunked", "Content-Type: " + formType,
				fmt.Sprintf("Content-Length: %d", len(chunkedThenSmuggled))}, chunkedThenSmuggled)
		}},
		{name: "space before colon", pbx: "xvb", want: 400, req: func(p string) []byte {
			return rawRequest(host, http.MethodPost, p, []string{"Content-Type: " + formType, "Transfer-Encoding : chunked",
				fmt.Sprintf("Content-Length: %d", len(chunkedThenSmuggled))}, chunkedThenSmuggled)
		}},
		// Slowloris: the headers, or the body, trickle in slower than Caddy's timeouts
		// (read_header 2s, read_body 2s).
		{name: "slow headers", pbx: "xvb", trickle: 300 * time.Millisecond, wait: 10 * time.Second, within: 5 * time.Second, req: func(p string) []byte {
			return post(host, p, formType, xvbIncoming("SLOW-HEADERS"), "X-Padding: "+strings.Repeat("a", 100))
		}},
		{name: "slow body", pbx: "xvb", logged: true, slowBody: true, trickle: 200 * time.Millisecond, wait: 10 * time.Second, within: 5 * time.Second, req: func(p string) []byte {
			return post(host, p, formType, xvbIncoming("SLOW-BODY"))
		}},
	}
	t.Run("cases", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				path := fmt.Sprintf("/hooks/mango/hostile-%d", i)
				if tc.pbx == "xvb" {
					path = fmt.Sprintf("/hooks/xvb/hostile-%d?key=%s", i, xvbKey)
				}
				req := tc.req(path)
				burst := 0
				if tc.slowBody {
					burst = bytes.Index(req, []byte("\r\n\r\n")) + 4
				}
				wait := tc.wait
				if wait == 0 {
					wait = 2 * time.Second
				}
				checkHostile(t, tc, exchange(t, host, req, burst, tc.trickle, tc.halfClose, wait), h, path)
			})
		}
	})

	// Nothing was queued: a final good message is the only event either CRM gets.
	code, body := h.g.Post("/hooks/xvb?key="+xvbKey, formType, xvbIncoming("FINAL"))
	if code != http.StatusOK {
		t.Fatalf("final message: %d %s", code, body)
	}
	for _, f := range []*front{h.crm, h.erp} {
		got := f.crm.WaitDelivered(t, 1, 30*time.Second)
		for _, d := range f.crm.Requests() {
			if d.Event.Data.CallID != "FINAL" {
				t.Errorf("CRM received call %s (%s)", d.Event.Data.CallID, d.Event.Type)
			}
		}
		if len(got) != 1 {
			t.Errorf("CRM received %d deliveries, want only the final message", len(got))
		}
	}
	metrics := h.g.MetricsText()
	for _, series := range []string{
		`pbxbridge_webhooks_received_total{account="main",outcome="accepted",pbx="xvb"} 1`,
		`pbxbridge_events_total{pbx="xvb",type="call.ringing"} 1`,
		`pbxbridge_webhooks_received_total{account="office",outcome="accepted",pbx="mango"} 0`,
	} {
		if !strings.Contains(metrics, series+"\n") {
			t.Errorf("metrics lack %s", series)
		}
	}
}

// checkHostile asserts a case's answer and its log line.
func checkHostile(t *testing.T, tc hostile, r exchangeResult, h *harness, path string) {
	t.Helper()
	switch {
	case tc.want != 0:
		if len(r.statuses) != 1 || r.statuses[0] != tc.want {
			t.Errorf("answers %v (closed %v), want one %d", r.statuses, r.closed, tc.want)
		}
	default: // cut off or refused
		if !r.closed && len(r.statuses) == 0 {
			t.Errorf("connection still open and unanswered after %s", r.took)
		}
		for _, s := range r.statuses {
			if s < 400 || s > 499 {
				t.Errorf("answered %d, want a 4xx or a cut connection", s)
			}
		}
	}
	if tc.within > 0 && r.took > tc.within {
		t.Errorf("answered or cut after %s, want within %s", r.took, tc.within)
	}
	if !tc.logged {
		return
	}
	logPath, _, _ := strings.Cut(path, "?")
	var line string
	gatewaytest.Eventually(t, 5*time.Second, "the refusal in the log", func() bool {
		for l := range strings.Lines(h.g.Logs()) {
			if strings.Contains(l, `"msg":"webhook rejected"`) && strings.Contains(l, `"path":"`+logPath+`"`) {
				line = l
				return true
			}
		}
		return false
	})
	if tc.want != 0 && !strings.Contains(line, fmt.Sprintf(`"status":%d`, tc.want)) {
		t.Errorf("log line does not say %d: %s", tc.want, line)
	}
}
