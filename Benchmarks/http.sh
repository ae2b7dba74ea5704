#!/usr/bin/env bash
# HTTP benchmarks of the accept path with durable commits, driven by wrk (-t2 -c64), as in the
# README: POST /orders/async and POST /buy (stock large enough that every decision is a sale,
# the costlier case, then stock 0: every decision a refusal).
#   Benchmarks/http.sh [seconds]      (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
swift build -c release --product flashsale >/dev/null
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
.build/release/flashsale serve --data "$work/bench.db" --port 0 --workers 0 --log-level warning >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
url="$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)"
run() { # name path script
  echo "== $1"
  wrk -t2 -c64 -d"${seconds}s" --latency -s "$3" "$url$2" | grep -E "Requests/sec|99%|50%|Non-2xx"
}
run "POST /orders/async" /orders/async Benchmarks/wrk/order.lua
curl -s -X POST "$url/reset-stock/1000000000" >/dev/null
run "POST /buy (every decision a sale)" /buy Benchmarks/wrk/buy.lua
curl -s -X PUT "$url/products/iphone_16" -d '{"stock": 0}' >/dev/null
run "POST /buy (sold out: every decision a refusal, 400)" /buy Benchmarks/wrk/buy.lua
