#!/usr/bin/env bash
# Load test of POST /mutate over TLS on loopback, with 1,000 fixes loaded.
#
#   bench/load.sh [seconds-per-step]      (default 10)
#
# Starts `selfheal serve` (release build, file store, generated certificates) on 127.0.0.1,
# drives it with wrk at 1, 16 and 64 connections for a bounded time each, and prints
# requests/s, p50 and p99 latency, and the server's resident memory. Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked --bin selfheal >/dev/null

work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/.state"
{
  echo "fixes:"
  echo "  - {namespace: gitlab, resource: gitlab-webservice, type: memory, value: 4Gi}"
  for n in $(seq 1 999); do
    echo "  - {namespace: team-$((n % 100)), resource: service-$n, type: memory, value: 2Gi}"
  done
} > "$work/.state/fixes.yaml"

https=18443
health=18080
(cd "$work" && exec "$OLDPWD/target/release/selfheal" serve \
  --listen "127.0.0.1:$https" --health-listen "127.0.0.1:$health" >"$work/server.log" 2>&1) &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$health/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$health/metrics" | grep -E '^selfheal_fixes_loaded' || { cat "$work/server.log"; exit 1; }

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$(pwd)/tests/data/deployment-create.json", "rb")
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status))
end
LUA

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$server_pid/status"; }
echo "server RSS before load: $(rss_kib) KiB (1,000 fixes loaded)"
for connections in 1 16 64; do
  threads=$(( connections < 2 ? 1 : 2 ))
  line=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 2s -s "$work/post.lua" \
    "https://127.0.0.1:$https/mutate" | grep '^RESULT')
  echo "connections=$connections ${line#RESULT } rss_kib=$(rss_kib)"
done
curl -fsS "http://127.0.0.1:$health/metrics" | grep -E 'selfheal_admission_reviews_total' | head -5
