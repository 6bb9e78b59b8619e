package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/pbxbridge/pbxbridge/caddymodule"
)

var update = flag.Bool("update", false, "rewrite the Caddyfile adapt golden files")

// TestCaddyfileAdapt adapts every testdata/caddyfile/*.caddyfile and compares the JSON with
// its golden file (caddytest.CompareAdapt): every option of docs/configuration.md is in them.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile/*.caddyfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Caddyfiles: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if w, messy := caddyfile.FormattingDifference(file, in); messy {
				t.Errorf("line %d: %s", w.Line, w.Message)
			}
			golden := strings.TrimSuffix(file, ".caddyfile") + ".json"
			if *update {
				writeAdapted(t, file, in, golden)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("no golden file (run with -update): %v", err)
			}
			// CompareAdapt prints the diff on stdout.
			if !caddytest.CompareAdapt(t, file, string(in), "caddyfile", strings.TrimSuffix(string(want), "\n")) {
				t.Errorf("adapted JSON differs from %s (-update rewrites it; review the diff)", golden)
			}
			// The golden config, the adapted one as compared, provisions (without starting anything)
			// once the secrets exist.
			for k, v := range map[string]string{
				"CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "CRM_WEBHOOK_SECRET_NEXT": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
				"CRM_TOKEN": "t", "MANGO_API_KEY": "k", "MANGO_API_SALT": "s", "XVB_ACCESS_CODE": "10019",
				"XVB_WEBHOOK_KEY": "key", "XVB_TOKEN": "t", "CRM_COMMAND_TOKEN": "t",
				"ITOOLABS_CRM_TOKEN": "c", "ITOOLABS_TOKEN": "t", "AMO_TOKEN": "t", "B24_WEBHOOK_SECRET": "s",
				"B24_CLIENT_ID": "local.1", "B24_CLIENT_SECRET": "s", "CONSOLE_TOKEN": "console-token-0123456789",
			} {
				t.Setenv(k, v)
			}
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			var cfg caddy.Config
			if err := json.Unmarshal(want, &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Errorf("adapted config does not provision: %v", err)
			}
		})
	}
}

// writeAdapted writes the JSON that file's Caddyfile in adapts to, indented as CompareAdapt
// compares it, to golden.
func writeAdapted(t *testing.T, file string, in []byte, golden string) {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(in, map[string]any{"filename": file})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s:%d: %s", file, w.Line, w.Message)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCaddyfileErrors: a mistake in the pbx block is a clear error naming the option.
func TestCaddyfileErrors(t *testing.T) {
	for _, tt := range []struct{ name, pbx, want string }{
		{"unknown option", `colour blue`, `unknown pbx option "colour"`},
		{"target without url", `target crm`, `target needs a name and a URL`},
		{"bad format", "target crm http://x {\n format xml yaml\n}", `format: cloudevents | cloudevents-binary | jq`},
		{"jq without expr", "target crm http://x {\n format jq\n}", `format: cloudevents | cloudevents-binary | jq`},
		{"bad size", `max_store lots`, `max_store: "lots" is not a size`},
		{"bad duration", `dedupe_window forever`, `"forever" is not a duration`},
		{"bad raw", "target crm http://x {\n raw maybe\n}", `"maybe" is not on or off`},
		{"bad dead_status", "target crm http://x {\n dead_status 42\n}", `dead_status: "42" is not an HTTP status`},
		{"backoff cap below first", "target crm http://x {\n retry {\n backoff 10s 1s\n }\n}", `the cap is smaller than the first delay`},
		{"target twice", "target crm http://x\n target crm http://y", `target crm is defined twice`},
		{"mango without name", "mango {\n api_key k\n}", `mango needs a name`},
		{"unknown mango option", "mango office {\n salt s\n}", `unknown mango option "salt"`},
		{"unknown xvb option", "xvb main {\n code 1\n}", `unknown xvb option "code"`},
		{"unknown itoolabs option", "itoolabs megafon {\n key k\n}", `unknown itoolabs option "key"`},
		{"unknown lookup option", "xvb main {\n lookup http://x {\n retries 3\n }\n}", `unknown lookup option "retries"`},
		{"lookup with three arguments", "xvb main {\n lookup amocrm http://x y\n}", `lookup <url> { … }, lookup bitrix24`},
		{"unknown amocrm option", "target amo amocrm https://x.amocrm.ru {\n colour blue\n}", `unknown amocrm target option "colour"`},
		{"amocrm users line", "target amo amocrm https://x.amocrm.ru {\n users {\n 101\n }\n}", `101: one value per line`},
		{"bad concurrency", "target crm http://x {\n concurrency -1\n}", `is not a positive number`},
		{"unknown nats tls option", "nats nats://x {\n tls {\n verify off\n }\n}", `unknown nats tls option "verify"`},
		{"nats tls argument", "nats nats://x {\n tls on\n}", `wrong argument count`},
		{"outbound_allow not a network", "outbound_allow localhost", `outbound_allow: "localhost" is not a CIDR or an address`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := "{\n\tpbx {\n" + tt.pbx + "\n\t}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(in), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
