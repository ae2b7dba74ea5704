#!/usr/bin/env bash
# The PostgreSQL figures, each beside pgbench on the same server in the same run:
#   1. pgbench ceilings: single-row INSERT, single-row SKIP LOCKED dequeue, hot-row UPDATE;
#   2. flashsale's queue full cycle (send 10 → receive 10 → delete) and concurrent sends;
#   3. POST /orders/async through one API process (`serve --workers 0`), wrk -t2 -c64 and -c256,
#      and the same on the embedded SQLite file, for comparison;
#   4. POST /buy on one hot product (stock 1e9, so every answer is a sale), wrk -t2 -c64.
# The request bodies are Benchmarks/http.sh's (Benchmarks/wrk/). A throwaway PostgreSQL on loopback
# (scripts/postgres-server), stopped and deleted at the end.
# Usage: Benchmarks/postgres.sh [seconds per figure, default 10]. Needs wrk and pgbench (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
clients=16

command -v wrk >/dev/null || { echo "installing wrk"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
dir=$(mktemp -d /tmp/flashsale-bench-pg.XXXXXX)
swift build -c release --product flashsale >"$dir/build.log" 2>&1 || { cat "$dir/build.log"; rm -rf "$dir"; exit 1; }
bin=$PWD/.build/release/flashsale

server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    scripts/postgres-server stop "$dir"
}
trap cleanup EXIT
url=$(scripts/postgres-server start "$dir")
pgbin=$(cat "$dir/bin")
port=${url##*:}; port=${port%%/*}
psql() { PGOPTIONS="-c client_min_messages=warning" "$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
pgbench() { "$pgbin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -c "$clients" -j 2 -T "$seconds" "$@" postgres 2>/dev/null | awk '/^tps/ {printf "%.0f", $3}'; }

echo "flashsale PostgreSQL benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $("$pgbin/postgres" --version)"
echo "server: $dir (fsync on, synchronous_commit on); pgbench with $clients clients; ${seconds}s per figure"
echo

# 1. pgbench ceilings on the same server.
psql -c "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, body text)" \
     -c "CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, body text)" \
     -c "INSERT INTO bench_jobs (body) SELECT repeat('x', 120) FROM generate_series(1, 2000000)" \
     -c "CREATE TABLE bench_stock (id int PRIMARY KEY, units bigint)" \
     -c "INSERT INTO bench_stock VALUES (1, 1000000000)" -c "VACUUM ANALYZE"
echo "INSERT INTO bench_insert (body) VALUES (repeat('x', 120));" >"$dir/insert.sql"
echo "DELETE FROM bench_jobs WHERE id = (SELECT id FROM bench_jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED);" >"$dir/dequeue.sql"
echo "UPDATE bench_stock SET units = units - 1 WHERE id = 1 AND units > 0;" >"$dir/hot.sql"
insert=$(pgbench -f "$dir/insert.sql")
dequeue=$(pgbench -f "$dir/dequeue.sql")
hot=$(pgbench -f "$dir/hot.sql")
printf '%-58s %10s/s\n' "pgbench single-row INSERT ($clients clients)" "$insert" \
    "pgbench single-row SKIP LOCKED dequeue ($clients clients)" "$dequeue" \
    "pgbench hot-row conditional UPDATE ($clients clients)" "$hot"

# Each figure starts on a quiet server: the peers' tables gone, their writes checkpointed.
quiet() { psql -c "DROP TABLE IF EXISTS bench_insert, bench_jobs, bench_stock" -c "CHECKPOINT"; sleep 2; }
quiet

# 2. The queue.
"$bin" bench queue --database "$url" --seconds "$seconds" --cyclers 16 --senders 64 | tail -2

# 3 and 4. One API process on the database, no workers (they would share the 2 cores).
start_server() { # start_server ARGS…: one API process, no workers; sets $base
    local http_port
    http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" serve "$@" --workers 0 --port "$http_port" --log-level error >"$dir/serve.log" 2>&1 &
    server_pid=$!
    base="http://127.0.0.1:$http_port"
    for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null && return; sleep 0.2; done
    echo "the server did not start:"; cat "$dir/serve.log"; exit 1
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }
measure() { # measure LABEL CONNECTIONS SCRIPT PATH
    local out
    out=$(wrk -t2 -c"$2" -d"${seconds}s" --latency -s "$3" "$base$4")
    printf '%-58s %10s/s  p99 %s\n' "$1" "$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')" "$(echo "$out" | awk '/ 99%/ {print $2}')"
    echo "$out" | grep -E "Non-2xx|Socket errors" || true
}

quiet
start_server --database "$url"
measure "POST /orders/async, one API process (wrk -t2 -c64)" 64 Benchmarks/wrk/order.lua /orders/async
measure "POST /orders/async, one API process (wrk -t2 -c256)" 256 Benchmarks/wrk/order.lua /orders/async
curl -fs -X POST "$base/reset-stock/1000000000" >/dev/null
measure "POST /buy on one hot product, every one a sale (-c64)" 64 Benchmarks/wrk/buy.lua /buy
echo "sold: $((1000000000 - $(curl -fs "$base/stock" | tr -dc 0-9))) (stock 1,000,000,000 before)"
stop_server

start_server --data "$dir/embedded.db"
measure "for comparison, the embedded SQLite file (-c64)" 64 Benchmarks/wrk/order.lua /orders/async
stop_server
