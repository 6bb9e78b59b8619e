package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// The peer phases (--peers) have a general stream processor do pbxbridge's Mango job: take
// the signed form Mango posts, check the account's key and its sign, sha256(vpbx_api_key +
// json + api_salt) in hex, map it roughly to the canonical event and POST that to the same CRM
// sink. The peer meant is Bento; the Go module proxy here refuses it, so the peer is Benthos v4,
// the engine Bento was forked from, with the same configuration language for these components
// (http_server input, mapping, http_client output). Its core has no sqlite buffer (Bento's
// durable one), so it runs with no buffer (the 2xx follows the CRM's) and with the memory
// buffer (the 2xx follows the enqueue, nothing durable). The peer lives in its own module,
// peers/benthos, so the gateway's go.mod never depends on it.

// peerDir is the peer module, relative to the gateway's module root.
const peerDir = "cmd/pbxbridge-bench/peers/benthos"

// buildPeer builds the peer module into dir.
func buildPeer(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bin := filepath.Join(dir, "benthos-peer")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(root, peerDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %v\n%s", cmd.Dir, err, out)
	}
	return bin, nil
}

// peerYAML is the peer's configuration; {BUFFER} is its buffer. The check and the mapping run
// as the input's processors, before the buffer, so that the answer can tell: the mapping
// throws on a wrong key or sign, the input answers 403 for an errored message (its sync
// response) and drops it, and answers 200 for the rest (buffer none: once the CRM took it;
// buffer memory: once it is in memory).
const peerYAML = `http:
  address: {ADMIN}
logger:
  level: WARN
input:
  http_server:
    address: {HTTP_ADDR}
    path: /hooks/mango/
    allowed_verbs: [ POST ]
    timeout: 10s
    sync_response:
      status: '${! if errored() { 403 } else { 200 } }'
  processors:
    - mapping: |
        let form = content().string().parse_form_url_encoded()
        root = if $form.vpbx_api_key != "` + mangoKey + `" { throw("unknown vpbx_api_key") }
        let sign = ($form.vpbx_api_key + $form.json + "` + mangoSalt + `").hash("sha256").encode("hex")
        root = if $form.sign != $sign { throw("wrong sign") }
        let m = $form.json.parse_json()
        root.specversion = "1.0"
        root.id = uuid_v4()
        root.source = "mango/office"
        root.type = if $m.call_state != null { "call." + $m.call_state.lowercase() } else { "call.completed" }
        root.time = now()
        root.datacontenttype = "application/json"
        root.data.call_id = $m.entry_id
        root.data.leg_id = $m.call_id
        root.data.seq = $m.seq
        root.data.from = $m.from.number
        root.data.to = $m.to.number
        root.data.extension = $m.to.extension
    - sync_response: {}
    - mapping: root = if errored() { deleted() }
buffer:
{BUFFER}
output:
  http_client:
    url: {CRM}/events
    verb: POST
    headers:
      Content-Type: application/cloudevents+json
      ` + seqHeader + `: ${! metadata("` + seqHeader + `") }
    max_in_flight: 16
    timeout: 10s
`

func peerConfig(kind gatewayKind) string {
	buffer := map[gatewayKind]string{
		kindPeerNone:   "  none: {}",
		kindPeerMemory: "  memory:\n    limit: 524288000",
	}[kind]
	return strings.ReplaceAll(peerYAML, "{BUFFER}", buffer)
}

// checkPeerRejectsWrongSign posts a Mango message signed with another salt: a peer that took it
// would not be doing the job it is compared on.
func checkPeerRejectsWrongSign(ctx context.Context, wl workload) error {
	m := mango.SampleCall(wl.run+"-wrong-sign", wl.run+"-wrong-sign-leg", sampleStart)[0]
	body := mango.FormBody(mangoKey, "another-salt", m.JSON)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wl.base+"/hooks/mango"+m.Suffix, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", formType)
	req.Header.Set(seqHeader, "-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if ok(resp.StatusCode) {
		return fmt.Errorf("accepted a Mango message with a wrong sign (%s)", resp.Status)
	}
	return nil
}
