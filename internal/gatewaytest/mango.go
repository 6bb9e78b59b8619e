package gatewaytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// mangoLockout is how long Mango refuses everything after it answered 401.
const mangoLockout = 2 * time.Minute

// MangoAPI stands in for Mango's command API as Mango documents it. A command is a POST to
// {api_url}/commands/<name> with Content-Type application/x-www-form-urlencoded and exactly the
// fields vpbx_api_key, sign and json; sign is lowercase hex SHA-256 of key + json + salt over
// the json as sent, and the json is compact. A request that breaks a rule gets DOC2017's 420
// with the code Mango would give (3101 not POST, 3102 sign, 3103 missing parameter, 3104
// format, 3105 key). Authentic commands get the next scripted answer. Five commands within one
// second break Mango's 4/s per account: the fake answers them 429 with Mango's body, { "name":
// "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429 }, and
// records the violation. Once it has answered 401 (Mango's lock-out after repeated bad
// requests) it answers 401 to everything for 2 minutes, and records any request meanwhile as
// a violation. Several gateways may share one MangoAPI, as they share one Mango account.
type MangoAPI struct {
	*httptest.Server

	key, salt   string
	mu          sync.Mutex
	lockedUntil time.Time
	script      []string // next answers: "1000", "3102", "5001", "429", "401", "timeout", "slow"; then "1000"
	arrivals    []time.Time
	commands    []MangoCommand // authentic, well-formed commands in arrival order
	refused     []string       // why requests were refused
	violations  []string
}

// MangoCommand is a command the fake took.
type MangoCommand struct {
	Name string         // callback, callback_group, call/hangup
	JSON string         // as sent
	Body map[string]any // decoded
}

// NewMangoAPI starts the fake for an account with key and salt.
func NewMangoAPI(t testing.TB, key, salt string) *MangoAPI {
	f := &MangoAPI{key: key, salt: salt}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// APIURL is what an account's api_url is set to: Mango's base URL ends in /vpbx.
func (f *MangoAPI) APIURL() string { return f.URL + "/vpbx" }

// Play sets the next answers to authentic commands.
func (f *MangoAPI) Play(answers ...string) {
	f.mu.Lock()
	f.script = append(f.script, answers...)
	f.mu.Unlock()
}

// Received are the authentic, well-formed commands in arrival order.
func (f *MangoAPI) Received() []MangoCommand {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]MangoCommand(nil), f.commands...)
}

// Requests is how many requests arrived, authentic or not.
func (f *MangoAPI) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.arrivals)
}

// CheckNoViolations fails t for every limit broken and every request refused so far.
func (f *MangoAPI) CheckNoViolations(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		t.Error(v)
	}
	for _, r := range f.refused {
		t.Errorf("fake Mango refused a request: %s", r)
	}
}

// mandatory are the json fields each command must carry, with their JSON types.
var mandatory = map[string]map[string]string{
	"callback":       {"command_id": "string", "from": "object", "to_number": "string"},
	"callback_group": {"command_id": "string", "from": "string", "to": "string", "line_number": "string"},
	"call/hangup":    {"command_id": "string", "call_id": "string"},
}

func (f *MangoAPI) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	f.mu.Lock()
	f.arrivals = append(f.arrivals, now)
	if now.Before(f.lockedUntil) {
		f.violations = append(f.violations, fmt.Sprintf("a request %s into Mango's lock-out", now.Sub(f.lockedUntil.Add(-mangoLockout)).Round(time.Millisecond)))
		f.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if n := len(f.arrivals); n >= 5 && now.Sub(f.arrivals[n-5]) < time.Second {
		f.violations = append(f.violations, fmt.Sprintf("5 commands within %s (Mango allows 4/s)", now.Sub(f.arrivals[n-5])))
		f.mu.Unlock()
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{ "name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429 }`)
		return
	}
	f.mu.Unlock()
	refuse := func(code int, why string) {
		f.mu.Lock()
		f.refused = append(f.refused, why)
		f.mu.Unlock()
		w.WriteHeader(420)
		fmt.Fprintf(w, `{"code":%d}`, code)
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/vpbx/commands/")
	switch {
	case !ok || mandatory[name] == nil:
		http.NotFound(w, r)
		return
	case r.Method != http.MethodPost:
		refuse(3101, "method "+r.Method)
		return
	case r.Header.Get("Content-Type") != "application/x-www-form-urlencoded":
		refuse(3104, "content type "+r.Header.Get("Content-Type"))
		return
	}
	raw, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(raw))
	if err != nil || len(form) != 3 || len(form["vpbx_api_key"]) != 1 || len(form["sign"]) != 1 || len(form["json"]) != 1 {
		refuse(3103, fmt.Sprintf("form %q", raw))
		return
	}
	js := form.Get("json")
	sum := sha256.Sum256([]byte(form.Get("vpbx_api_key") + js + f.salt))
	switch {
	case form.Get("vpbx_api_key") != f.key:
		refuse(3105, "vpbx_api_key")
		return
	case form.Get("sign") != hex.EncodeToString(sum[:]):
		refuse(3102, "sign")
		return
	}
	var compact bytes.Buffer
	var body map[string]any
	if json.Compact(&compact, []byte(js)) != nil || compact.String() != js || json.Unmarshal([]byte(js), &body) != nil {
		refuse(3104, "json not compact: "+js)
		return
	}
	for field, typ := range mandatory[name] {
		v, ok := body[field]
		if _, isObj := v.(map[string]any); !ok || (typ == "object") != isObj || (typ == "string" && v == "") {
			refuse(3103, name+" without "+field+": "+js)
			return
		}
	}
	if name == "callback" && body["from"].(map[string]any)["extension"] == "" {
		refuse(3103, "callback without from.extension: "+js)
		return
	}
	f.mu.Lock()
	f.commands = append(f.commands, MangoCommand{name, js, body})
	answer := "1000"
	if len(f.script) > 0 {
		answer, f.script = f.script[0], f.script[1:]
	}
	if answer == "401" {
		f.lockedUntil = time.Now().Add(mangoLockout)
	}
	f.mu.Unlock()
	switch answer {
	case "timeout":
		<-r.Context().Done() // never answers; the gateway gives up
	case "slow":
		time.Sleep(300 * time.Millisecond) // a slow but successful Mango
		fmt.Fprintf(w, `{"result":1000,"command_id":%q}`, body["command_id"])
	case "429":
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{ "name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429 }`)
	case "401":
		w.WriteHeader(http.StatusUnauthorized)
	case "3102":
		w.WriteHeader(420)
		io.WriteString(w, `{"code":3102}`)
	default:
		fmt.Fprintf(w, `{"result":%s,"command_id":%q}`, answer, body["command_id"])
	}
}
