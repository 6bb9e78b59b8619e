package gatewaytest

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Caddyfile writes the parts in their blocks, formatted as caddy fmt would, so the gateway
// logs no formatting warning.
func TestCaddyfile(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    Caddyfile
		want string
	}{
		{"bare", Caddyfile{}, `{
	admin {ADMIN}
	pbx {
		data_dir {DATA}
	}
}
{HTTP} {
	bind 127.0.0.1
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`},
		{"every part", Caddyfile{
			Global: []string{"debug", Block("servers", Block("timeouts", "read_body 2s"))},
			Store:  "nats nats://127.0.0.1:4222",
			PBX:    []string{"", "max_store 1MiB", Block("target crm http://127.0.0.1:9", Block("retry", "backoff 20ms 200ms"))},
			Site:   []string{AccessLogWithout("key", "token"), Block("route /hooks/xvb", "pbx_webhook main")},
		}, `{
	admin {ADMIN}
	debug
	servers {
		timeouts {
			read_body 2s
		}
	}
	pbx {
		nats nats://127.0.0.1:4222
		max_store 1MiB
		target crm http://127.0.0.1:9 {
			retry {
				backoff 20ms 200ms
			}
		}
	}
}
{HTTP} {
	bind 127.0.0.1
	log {
		output stderr
		format filter {
			request>uri query {
				delete key
				delete token
			}
		}
	}
	route /hooks/xvb {
		pbx_webhook main
	}
}
{METRICS} {
	bind 127.0.0.1
	metrics
}
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.String()
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			if w, messy := caddyfile.FormattingDifference("Caddyfile", []byte(got)); messy {
				t.Errorf("line %d: %s", w.Line, w.Message)
			}
		})
	}
}
