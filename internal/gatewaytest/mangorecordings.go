package gatewaytest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MangoRecordings is Mango's recording download as docs/mango.md (Recordings) describes it: a
// signed POST to {api_url}/queries/recording/post, answered with a 302 to a one-shot URL on a
// separate file server that serves audio/mp3 once and knows nothing of Range. A recording it does
// not know gets 404; one stored but not yet downloadable gets {"result":3320}; a bad sign gets
// DOC2017's 420 {"code":3102}.
type MangoRecordings struct {
	api, files *httptest.Server
	Key, Salt  string // the account's api_key and api_salt

	// Mu guards what a test sets and reads below.
	Mu        sync.Mutex
	content   map[string][]byte // downloadable recordings
	Pending   map[string]bool   // stored, not yet downloadable
	Slow      map[string]bool   // served in chunks with pauses, without Content-Length
	Stalled   map[string]bool   // half sent, then nothing until the client leaves
	Busy      bool              // answer everything with the rate limit
	oneShot   map[string]string // file token → recording id; each is served once
	Queries   []string          // the json of every authentic query
	Queried   chan struct{}     // when set, told of every authentic query
	FileLinks []string          // every one-shot path handed out
}

func NewMangoRecordings(t testing.TB, key, salt string) *MangoRecordings {
	f := &MangoRecordings{
		Key: key, Salt: salt,
		content: map[string][]byte{}, Pending: map[string]bool{}, Slow: map[string]bool{},
		Stalled: map[string]bool{}, oneShot: map[string]string{},
	}
	f.api = httptest.NewServer(http.HandlerFunc(f.serveAPI))
	f.files = httptest.NewServer(http.HandlerFunc(f.serveFile))
	t.Cleanup(f.files.Close)
	t.Cleanup(f.api.Close)
	return f
}

// APIURL is what an account's api_url is set to: Mango's base URL ends in /vpbx.
func (f *MangoRecordings) APIURL() string { return f.api.URL + "/vpbx" }

// Add makes a downloadable recording of n random bytes and returns them.
func (f *MangoRecordings) Add(id string, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	f.Mu.Lock()
	f.content[id] = b
	f.Mu.Unlock()
	return b
}

func (f *MangoRecordings) QueryCount() int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return len(f.Queries)
}

func (f *MangoRecordings) serveAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/vpbx/queries/recording/post" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		w.WriteHeader(420)
		fmt.Fprint(w, `{"code":3104}`)
		return
	}
	key, js := r.PostForm.Get("vpbx_api_key"), r.PostForm.Get("json")
	sum := sha256.Sum256([]byte(key + js + f.Salt))
	if key != f.Key || r.PostForm.Get("sign") != hex.EncodeToString(sum[:]) {
		w.WriteHeader(420)
		fmt.Fprint(w, `{"code":3102}`)
		return
	}
	var q struct {
		RecordingID string `json:"recording_id"`
		Action      string `json:"action"`
	}
	if json.Unmarshal([]byte(js), &q) != nil || q.Action != "download" {
		w.WriteHeader(420)
		fmt.Fprint(w, `{"code":3104}`)
		return
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Queries = append(f.Queries, js)
	if f.Queried != nil {
		select {
		case f.Queried <- struct{}{}:
		default:
		}
	}
	_, known := f.content[q.RecordingID]
	switch {
	case f.Busy:
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}`)
	case known:
		token := rand.Text()
		f.oneShot[token] = q.RecordingID
		f.FileLinks = append(f.FileLinks, "/dl/"+token)
		http.Redirect(w, r, f.files.URL+"/dl/"+token, http.StatusFound)
	case f.Pending[q.RecordingID]:
		fmt.Fprint(w, `{"result":3320}`)
	default:
		http.NotFound(w, r)
	}
}

func (f *MangoRecordings) serveFile(w http.ResponseWriter, r *http.Request) {
	f.Mu.Lock()
	token := strings.TrimPrefix(r.URL.Path, "/dl/")
	id, ok := f.oneShot[token]
	delete(f.oneShot, token)
	b, slow, stalled := f.content[id], f.Slow[id], f.Stalled[id]
	f.Mu.Unlock()
	if !ok {
		http.Error(w, "link expired", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "audio/mp3")
	switch {
	case stalled:
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case slow:
		for chunk := range eighths(b) {
			w.Write(chunk)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond) // the file server's pace, not synchronisation
		}
	default:
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	}
}

// eighths yields b in eight pieces.
func eighths(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		n := (len(b) + 7) / 8
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}
