#!/usr/bin/env bash
# Checks the deployment files: Prometheus alert rules (syntax and unit tests) and the Grafana
# dashboard (valid JSON). CI runs it from the repository root: `bash deploy/check.sh`.
# Installs promtool when it is missing (Debian's `prometheus` package ships it; needs root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null 2>&1; then
	echo "promtool not found: installing Debian's prometheus package" >&2
	if [ "$(id -u)" -ne 0 ]; then
		echo "need root to install prometheus (or put promtool on PATH)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq prometheus >/dev/null
fi
promtool --version | head -n 1

echo "--- promtool check rules"
promtool check rules deploy/prometheus/alerts.yml

echo "--- promtool test rules"
promtool test rules deploy/prometheus/alerts_test.yml

echo "--- dashboard JSON"
python3 -m json.tool deploy/grafana/pbxbridge.json >/dev/null
echo "deploy/grafana/pbxbridge.json: valid JSON"

echo "deploy: OK"
