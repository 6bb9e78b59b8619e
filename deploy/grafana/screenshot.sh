#!/usr/bin/env bash
# Renders deploy/grafana/dashboard.png, the picture of the Grafana dashboard in the README, from
# real data on this machine: `bash deploy/grafana/screenshot.sh` (DURATION=<seconds> of traffic,
# default 300). Everything listens on 127.0.0.1 and stops when the script ends.
#
# It builds ./cmd/pbxbridge and starts:
#   - a gateway with a Mango account and an XVB account (`sources any`), both forwarding to two
#     targets: `echo` (`pbxbridge crm-echo`, always healthy) and `flaky`, a CRM that refuses one
#     event in 16 with 422 (dead letters); in the second quarter of the run it is down
#     (connection refused: retries, the circuit opens, the queue grows), in the third it is back
#     (the queue drains), in the last it answers 503 (the circuit is open in the picture);
#   - a stub for the CRM's contact lookup and for Mango's command API (a Caddy site);
#   - Debian's prometheus, scraping the gateway every second into a temporary directory.
# Traffic: `pbxbridge simulate mango|xvb` in loops, plus click-to-call commands, contact
# lookups, Mango re-sends (duplicates), wrong signatures and wrong access codes. At the end,
# with the traffic still running, tools/grafana-render draws the dashboard's panels from
# Prometheus, rsvg-convert makes the PNG and pngquant shrinks it. Installs prometheus,
# librsvg2-bin and pngquant with apt-get when they are missing (needs root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
duration=${DURATION:-300}

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v rsvg-convert >/dev/null 2>&1 || missing+=(librsvg2-bin)
command -v pngquant >/dev/null 2>&1 || missing+=(pngquant)
if ((${#missing[@]})); then
	echo "installing ${missing[*]}" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to install ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d)
# Job control puts each background job in a process group of its own, so that stopping a job
# also stops what it is running (a loop's current `simulate` or `sleep`).
set -m
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM -- "-$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Caddy keeps its autosaved config and data under these; not in the user's home.
export XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data

echo "--- building"
go build -o "$work/pbxbridge" ./cmd/pbxbridge
go -C tools/grafana-render build -o "$work/render" . # a module of its own
bin=$work/pbxbridge

read -r admin_port http_port metrics_port echo_port flaky_port stub_port prom_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export admin_port http_port metrics_port echo_port flaky_port stub_port work

max_store_bytes=$((16 << 20))
export MANGO_KEY=demo-api-key MANGO_SALT=demo-api-salt XVB_CODE=10019
export CRM_SECRET=whsec_ZGVtby1zZWNyZXQtZm9yLXRoZS1zY3JlZW5zaG90 COMMAND_TOKEN=demo-command-token
hooks=http://127.0.0.1:$http_port/hooks

cat >"$work/gateway.Caddyfile" <<'EOF'
{
	admin 127.0.0.1:{$admin_port}
	default_bind 127.0.0.1
	pbx {
		data_dir {$work}/store
		max_store 16MiB
		target echo http://127.0.0.1:{$echo_port} {
			secret {env.CRM_SECRET}
		}
		target flaky http://127.0.0.1:{$flaky_port}/events {
			timeout 2s
			retry {
				backoff 1s 10s
			}
		}
		mango office {
			api_key {env.MANGO_KEY}
			api_salt {env.MANGO_SALT}
			sources any
			api_url http://127.0.0.1:{$stub_port}/vpbx
			forward echo flaky
		}
		xvb main {
			access_code {env.XVB_CODE}
			sources any
			lookup http://127.0.0.1:{$stub_port}/contact {
				timeout 1s
				cache 10s
			}
			forward echo flaky
		}
	}
}
http://127.0.0.1:{$http_port} {
	bind 127.0.0.1
	route /hooks/mango/* {
		pbx_webhook office
	}
	route /hooks/xvb {
		pbx_webhook main
	}
	route /calls {
		pbx_originate {
			token {env.COMMAND_TOKEN}
		}
	}
	route /healthz {
		pbx_health
	}
}
http://127.0.0.1:{$metrics_port} {
	bind 127.0.0.1
	metrics
}
EOF

# The CRM's contact lookup knows every caller; Mango's command API takes every command.
cat >"$work/stub.Caddyfile" <<'EOF'
{
	admin off
	default_bind 127.0.0.1
}
http://127.0.0.1:{$stub_port} {
	bind 127.0.0.1
	header Content-Type application/json
	respond /contact `{"name":"Вася/Рога и Копыта","responsible":"100"}`
	respond /vpbx/* `{"result":1000}`
}
EOF

# The flaky CRM answers FLAKY_STATUS, and 422 to one event in 16 (webhook-id starting with 0).
cat >"$work/flaky.Caddyfile" <<'EOF'
{
	admin off
	default_bind 127.0.0.1
}
http://127.0.0.1:{$flaky_port} {
	bind 127.0.0.1
	@refused header_regexp webhook-id ^0
	respond @refused 422
	respond {$FLAKY_STATUS}
}
EOF

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: pbxbridge
    static_configs:
      - targets: ["127.0.0.1:$metrics_port"]
EOF

wait_for() { # url what
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return
		sleep 0.2
	done
	echo "$2 did not come up; its log:" >&2
	tail -n 20 "$work/$2.log" >&2
	exit 1
}

flaky_pid=
flaky() { # up <status> | down
	if [ -n "$flaky_pid" ]; then
		kill -- "-$flaky_pid"
		wait "$flaky_pid" 2>/dev/null || true
		flaky_pid=
	fi
	echo "$(date +%T) flaky CRM: $*"
	if [ "$1" = up ]; then
		FLAKY_STATUS=$2 "$bin" run --adapter caddyfile --config "$work/flaky.Caddyfile" >>"$work/flaky.log" 2>&1 &
		flaky_pid=$!
		pids+=("$flaky_pid")
	fi
}

echo "--- starting (work dir $work)"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
	--web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)
"$bin" crm-echo "127.0.0.1:$echo_port" --secret "$CRM_SECRET" >"$work/echo.log" 2>&1 &
pids+=($!)
"$bin" run --adapter caddyfile --config "$work/stub.Caddyfile" >"$work/stub.log" 2>&1 &
pids+=($!)
"$bin" run --adapter caddyfile --config "$work/gateway.Caddyfile" >"$work/gateway.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$prom_port/-/ready" prometheus
wait_for "http://127.0.0.1:$http_port/healthz" gateway
flaky up 200

started=$(date +%s)

# A Mango message signed by hand (sha256 of key + json + salt), for re-sends.
mango_post() { # path json
	local sign
	sign=$(printf '%s%s%s' "$MANGO_KEY" "$2" "$MANGO_SALT" | sha256sum | cut -d' ' -f1)
	curl -sS -o /dev/null --data-urlencode "vpbx_api_key=$MANGO_KEY" --data-urlencode "sign=$sign" \
		--data-urlencode "json=$2" "$hooks/mango$1"
}

# The loops run until the script ends (cleanup stops them), so the picture is taken under load.
echo "--- traffic for ${duration}s"
(while true; do
	"$bin" simulate mango --url "$hooks/mango" --key "$MANGO_KEY" --salt "$MANGO_SALT" >/dev/null || true
	sleep 0.2
done) &
pids+=($!)
(while true; do
	"$bin" simulate xvb --url "$hooks/xvb" --access-code "$XVB_CODE" >/dev/null || true
	sleep 0.4
done) &
pids+=($!)
(n=0; while true; do
	n=$((n + 1))
	curl -sS -o /dev/null -H "Authorization: Bearer $COMMAND_TOKEN" -H 'Content-Type: application/json' \
		-d "{\"account\":\"office\",\"from\":\"101\",\"to\":\"+7900$(printf '%07d' $((RANDOM * 7 % 10000000)))\"}" \
		"http://127.0.0.1:$http_port/calls"
	curl -sS -o /dev/null -d "access_code=$XVB_CODE&cmd=contact&phone=7920$(printf '%07d' $((RANDOM % 50)))" "$hooks/xvb"
	if ((n % 3 == 0)); then # a re-send: Mango did not get our answer in time
		summary="{\"entry_id\":\"resend-$n\",\"call_direction\":1,\"from\":{\"number\":\"79123456789\"},\"to\":{\"extension\":\"101\"},\"create_time\":$(date +%s),\"forward_time\":0,\"talk_time\":0,\"end_time\":$(date +%s),\"entry_result\":0,\"disconnect_reason\":1110}"
		mango_post /events/summary "$summary"
		mango_post /events/summary "$summary"
	fi
	if ((n % 5 == 0)); then # a PBX set up with the wrong salt
		"$bin" simulate mango --url "$hooks/mango" --key "$MANGO_KEY" --salt wrong-salt >/dev/null 2>&1 || true
	fi
	if ((n % 7 == 0)); then # a PBX with another access code
		"$bin" simulate xvb --url "$hooks/xvb" --access-code 99999 >/dev/null 2>&1 || true
	fi
	sleep 1
done) &
pids+=($!)

sleep $((duration / 4))
flaky down
sleep $((duration / 4))
flaky up 200
sleep $((duration / 4))
flaky up 503
sleep $((duration - 3 * (duration / 4)))

echo "--- rendering"
window=$(($(date +%s) - started + 30))
"$work/render" --dashboard deploy/grafana/pbxbridge.json --prometheus "http://127.0.0.1:$prom_port" \
	--range "${window}s" --rate-interval 30s --var "max_store_bytes=$max_store_bytes" --out "$work/dashboard.svg"
rsvg-convert --output "$work/dashboard.png" "$work/dashboard.svg"
pngquant --quality 70-95 --speed 1 --force --output deploy/grafana/dashboard.png "$work/dashboard.png"
echo "deploy/grafana/dashboard.png: $(du -k deploy/grafana/dashboard.png | cut -f1) KiB"
