#!/usr/bin/env bash
# Checks the deployment files: Prometheus alert rules (syntax and unit tests), the Grafana
# dashboard (valid JSON, its queries) and the renderer of its picture (its tests). CI runs it
# from the repository root: `bash deploy/check.sh`.
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
	apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -n 1

echo "--- promtool check rules"
promtool check rules deploy/prometheus/alerts.yml

echo "--- promtool test rules"
promtool test rules deploy/prometheus/alerts_test.yml

echo "--- dashboard JSON"
python3 -m json.tool deploy/grafana/pbxbridge.json >/dev/null
echo "deploy/grafana/pbxbridge.json: valid JSON"

# Every dashboard query must parse as PromQL and, like the alert rules, name only metrics that
# pbxbridge exports (docs/metrics.md). The queries are written
# into a throw-away rule file (Grafana variables replaced by plain values) for promtool to parse.
echo "--- dashboard queries and metric names"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/dashboard-queries.yml" <<'PY'
import json, re, sys

KNOWN = {
    "pbxbridge_webhooks_received_total", "pbxbridge_webhooks_rejected_total",
    "pbxbridge_ingest_duration_seconds", "pbxbridge_events_total",
    "pbxbridge_delivery_attempts_total", "pbxbridge_delivery_retries_total",
    "pbxbridge_delivery_failures_total", "pbxbridge_dead_lettered_total",
    "pbxbridge_dead_letters", "pbxbridge_queue_depth", "pbxbridge_queue_oldest_age_seconds",
    "pbxbridge_store_bytes", "pbxbridge_delivery_duration_seconds",
    "pbxbridge_delivery_lag_seconds", "pbxbridge_circuit_open", "pbxbridge_target_paused",
    "pbxbridge_contact_lookups_total", "pbxbridge_contact_lookup_duration_seconds",
    "pbxbridge_commands_total", "pbxbridge_build_info", "pbxbridge_lanes_parked",
    "pbxbridge_store_write_failed", "pbxbridge_store_disk_free_bytes",
}
HISTOGRAMS = {"pbxbridge_ingest_duration_seconds", "pbxbridge_delivery_duration_seconds",
              "pbxbridge_delivery_lag_seconds", "pbxbridge_contact_lookup_duration_seconds"}

def names(expr):
    out = set()
    for n in re.findall(r"pbxbridge_[a-z_]+", expr):
        base = re.sub(r"_(bucket|sum|count)$", "", n)
        out.add(base if base in HISTOGRAMS else n)
    return out

dash = json.load(open("deploy/grafana/pbxbridge.json"))
exprs = []
def walk(panels):
    for p in panels:
        exprs.extend((p.get("title", "?"), t["expr"]) for t in p.get("targets", []) if "expr" in t)
        walk(p.get("panels", []))
walk(dash["panels"])
for v in dash["templating"]["list"]:
    if v.get("type") == "query":
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", v["query"])
        if not m:
            sys.exit(f"variable {v['name']}: unexpected query {v['query']!r}")
        exprs.append((f"variable {v['name']}", m.group(1)))

bad = []
for title, e in exprs:
    unknown = names(e) - KNOWN
    if unknown:
        bad.append(f"{title}: unknown metric(s) {sorted(unknown)} in {e}")
    if not names(e):
        bad.append(f"{title}: no pbxbridge metric in {e}")
rules_text = open("deploy/prometheus/alerts.yml").read()
for n in sorted(names(rules_text) - KNOWN):
    bad.append(f"alerts.yml: unknown metric {n}")
if bad:
    sys.exit("\n".join(bad))

def plain(e):
    e = e.replace("$__rate_interval", "5m").replace("$max_store_bytes", "21474836480")
    return re.sub(r"\$\w+", ".*", e)

with open(sys.argv[1], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (_, e) in enumerate(exprs):
        f.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(plain(e))}\n")
print(f"{len(exprs)} queries, metric names all known")
PY
promtool check rules "$tmp/dashboard-queries.yml" >/dev/null
echo "dashboard queries: valid PromQL"

# The renderer of grafana/dashboard.png is a module of its own, outside `go test ./...`.
echo "--- dashboard renderer (tools/grafana-render)"
go -C tools/grafana-render vet ./...
go -C tools/grafana-render test -count=1 ./...

echo "deploy: OK"
