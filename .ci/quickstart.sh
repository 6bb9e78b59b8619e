#!/usr/bin/env bash
# Follows the README quick start literally on this checkout: crm-echo, the gateway on the
# repository's Caddyfile, `simulate mango`; then checks crm-echo printed the whole call.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
# A fresh HOME keeps Caddy's data and config out of the user's; Go's caches stay where they
# are (a fresh module cache would download and rebuild everything: minutes of CI for nothing).
export GOMODCACHE="$(go env GOMODCACHE)" GOCACHE="$(go env GOCACHE)" GOPATH="$(go env GOPATH)"
export HOME="$work" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"
pids=()
cleanup() {
	# `go run` does not pass the signal on: stop the programs it started, then go run itself.
	for pid in "${pids[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/pbxbridge" ./cmd/pbxbridge # so that `go run` below starts at once
go run ./cmd/pbxbridge crm-echo >"$work/echo.log" 2>&1 &
pids+=($!)
go run ./cmd/pbxbridge run --config Caddyfile >"$work/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 300); do
	if curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1; then break; fi
	sleep 0.2
done
curl -fsS http://127.0.0.1:8080/healthz

go run ./cmd/pbxbridge simulate mango --url http://127.0.0.1:8080/hooks/mango \
	--key demo-api-key-not-secret --salt demo-api-salt-not-secret

for _ in $(seq 1 100); do
	[ "$(grep -c '"type": "call.completed"' "$work/echo.log")" -ge 1 ] && break
	sleep 0.1
done
types=$(grep -o '"type": "call\.[a-z_]*"' "$work/echo.log" | tr '\n' ' ')
echo "crm-echo received: $types"
expected='"type": "call.ringing" "type": "call.answered" "type": "call.leg_ended" "type": "call.completed" '
if [ "$types" != "$expected" ]; then
	echo "quick start failed: expected $expected" >&2
	tail -50 "$work/gateway.log" >&2
	exit 1
fi
echo "quick start: 1 passed, 0 failed"
