#!/usr/bin/env bash
# Checks the alerting rules of the monitoring component and runs their unit tests:
#   promtool check rules  (syntax, PromQL, templates; also the PromQL of the dashboard's queries)
#   promtool test rules   (tests/monitoring/*.test.yaml: each alert fires when it must, and not
#                          when it must not)
# Installs promtool from Debian's `prometheus` package when it is missing (needs root and apt).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

rule_source=manifests/components/monitoring/prometheusrule.yaml
dashboard=manifests/components/monitoring/dashboard.json
tests_dir=tests/monitoring

if ! command -v promtool >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "promtool is missing and apt-get is not available: install promtool (Prometheus) and rerun" >&2
        exit 1
    fi
    echo "== installing promtool (Debian package prometheus)"
    as_root() {
        if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
    }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # The package's postinst would start a Prometheus server: policy-rc.d refuses service starts.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod +x "$policy"
        created_policy=yes
    fi
    status=0
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null || status=$?
    if [ -n "$created_policy" ]; then
        as_root rm -f "$policy"
    fi
    if [ "$status" -ne 0 ]; then
        echo "apt-get install prometheus failed (exit $status)" >&2
        exit "$status"
    fi
fi
promtool --version 2>&1 | sed -n 1p

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 is missing (it reads the dashboard's JSON): install python3 and rerun" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The PrometheusRule's `spec` is a Prometheus rules file indented by two spaces: take the lines
# after the top-level `spec:` up to the next top-level key and remove that indentation. Any mistake
# here makes `promtool check rules` fail below.
awk '
    /^spec:[[:space:]]*$/ { in_spec = 1; next }
    in_spec && /^[^[:space:]#]/ { in_spec = 0 }
    in_spec { sub(/^  /, ""); print }
' "$rule_source" >"$work/selfheal.rules.yaml"
if ! grep -q '^groups:' "$work/selfheal.rules.yaml"; then
    echo "$rule_source: no top-level spec.groups found" >&2
    exit 1
fi

cp "$tests_dir"/*.test.yaml "$work/"

# The dashboard's queries, as recording rules, so that promtool parses their PromQL too (Grafana's
# $__rate_interval and the $job variable replaced by values Prometheus accepts).
python3 - "$dashboard" >"$work/dashboard.rules.yaml" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    dashboard = json.load(f)
exprs = [
    target["expr"]
    for panel in dashboard["panels"]
    for target in panel.get("targets", [])
]
if not exprs:
    sys.exit(sys.argv[1] + ": no panel queries found")
print("groups:\n  - name: selfheal-dashboard\n    rules:")
for number, expr in enumerate(exprs, start=1):
    expr = expr.replace("$__rate_interval", "5m").replace("$job", ".+")
    print(f"      - record: selfheal_dashboard:query_{number}")
    print(f"        expr: {json.dumps(expr)}")
PY

echo "== promtool check rules"
promtool check rules "$work/selfheal.rules.yaml"
echo "== promtool check rules (the dashboard's queries)"
promtool check rules "$work/dashboard.rules.yaml"

echo "== promtool test rules"
promtool test rules "$work"/*.test.yaml
