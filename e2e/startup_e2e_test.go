package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/pbx/mango"
)

// TestStartupErrors: each configuration mistake an operator makes stops `pbxbridge run` with
// one line that names the option and says what to write instead.
func TestStartupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const mango = "mango office {\n\t\t\tapi_key k\n\t\t\tapi_salt s\n\t\t\tsources any\n\t\t\tforward crm\n\t\t}"
	const hooks = "route /hooks/mango/* {\n\t\tpbx_webhook office\n\t}"
	for _, tt := range []struct{ name, dataDir, pbx, routes, want string }{
		{"unknown target in forward", "", "target crm http://127.0.0.1:9/events\n" + strings.Replace(mango, "forward crm", "forward shop", 1), hooks,
			"mango office: forward shop: no target named shop (define it with `target shop <url>`)"},
		{"missing api_salt", "", "target crm http://127.0.0.1:9/events\n" + strings.Replace(mango, "api_salt s", "", 1), hooks,
			`mango office: api_salt is required (Mango personal account → Integrations → API connector: \"Ключ для создания подписи\")`},
		{"xvb without sources", "", "target crm http://127.0.0.1:9/events\nxvb main {\n\t\t\taccess_code 1\n\t\t\tforward crm\n\t\t}", "route /hooks/xvb {\n\t\tpbx_webhook main\n\t}",
			"xvb main: sources is required: XVB signs nothing and publishes no addresses; give your XVB server's addresses, or `sources any` to accept any sender"},
		{"target not http", "", "target crm ftp://crm.example.com/events\n" + mango, hooks,
			"target crm: url must be an http:// or https:// URL"},
		{"unwritable data_dir", filepath.Join(notADir, "store"), "target crm http://127.0.0.1:9/events\n" + mango, hooks,
			"data_dir " + filepath.Join(notADir, "store") + " cannot be created (mkdir " + notADir + ": not a directory): set data_dir to a directory pbxbridge may write"},
		{"two accounts on one path", "", "target crm http://127.0.0.1:9/events\n" + mango + "\n" + strings.Replace(mango, "office", "shop", 1),
			hooks + "\n\troute /hooks/mango/* {\n\t\tpbx_webhook shop\n\t}",
			"pbx_webhook office and pbx_webhook shop on one path (host 127.0.0.1 path /hooks/mango/*): only office would ever get webhooks; give each account a path of its own, e.g. route /hooks/shop/* { pbx_webhook shop }"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caseDir := t.TempDir()
			dataDir := tt.dataDir
			if dataDir == "" {
				dataDir = filepath.Join(caseDir, "store")
			}
			config := fmt.Sprintf("{\n\tadmin off\n\tpbx {\n\t\tdata_dir %s\n\t\t%s\n\t}\n}\nhttp://127.0.0.1:%d {\n\t%s\n}\n",
				dataDir, tt.pbx, gatewaytest.FreePort(t), tt.routes)
			path := filepath.Join(caseDir, "Caddyfile")
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, gatewaytest.Binary(t), "run", "--config", path)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err == nil || ctx.Err() != nil {
				t.Fatalf("run did not fail (%v):\n%s\n%s", err, config, out.String())
			}
			var line string // the one that says what is wrong (log lines are JSON: quotes escaped)
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, tt.want) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no line says %q:\n%s", tt.want, out.String())
			}
			t.Log(line)
		})
	}
}

// TestFirstWebhookAfterStartIsAccepted: Caddy may open the listeners before the queue has
// started; the first webhook that gets through waits for it (within its 2 s budget) and is
// accepted rather than answered 503 "queue not started yet". The webhook is sent from before
// the process starts, as a PBX's re-sends would be.
func TestFirstWebhookAfterStartIsAccepted(t *testing.T) {
	crm := gatewaytest.NewCRM(t, nil)
	g := gatewaytest.Start(t, mangoGateway(crm.URL+"/events", "127.0.0.1").String(), "TEST_MANGO_SALT="+testSalt)
	for start := range 3 {
		g.Stop()
		m := mango.SampleCall(fmt.Sprintf("E-first-%d", start), fmt.Sprintf("L-first-%d", start), time.Unix(1764065700, 0))[0]
		body := mango.FormBody(testKey, testSalt, m.JSON)
		first := make(chan string, 1)
		go func() {
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
				if code, answer := g.Post("/hooks/mango"+m.Suffix, formType, body); code != 0 {
					first <- fmt.Sprint(code, " ", answer)
					return
				}
			}
			first <- "no answer within a minute"
		}()
		g.Restart()
		if got := <-first; !strings.HasPrefix(got, "200 ") {
			t.Fatalf("start %d: the first webhook got %s", start, got)
		}
	}
	crm.WaitDelivered(t, 3, 30*time.Second)
}
