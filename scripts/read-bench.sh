#!/usr/bin/env bash
# Measures balance reads on a 3-node cluster where every read arrives at a
# node that owns no partition: a standalone broker, two nodes owning the
# partitions (n1, n2) and one ingress-only node (edge) that the bench
# targets, all sharing one Redis. Strong reads hop from the edge to the
# owner's memory; eventual reads (?consistency=eventual) are answered by
# the edge from Redis. For each concurrency it reports throughput, p50
# and p99, CPU per read of the three nodes, Redis and PostgreSQL, and
# the host's idle CPU; then the audit. Loopback only; bounded.
#   scripts/read-bench.sh [bin/bursar]
set -euo pipefail
BIN=${1:-bin/bursar}
CLIENTS=${CLIENTS:-1 8 64 256}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DB=${DB:-readbench}
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
redis-server --port 26391 --bind 127.0.0.1 --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
REDIS=$!
PIDS+=("$REDIS")
"$BIN" broker --data-dir "$DIR/broker" --listen 127.0.0.1:29400 >"$DIR/broker.log" 2>&1 &
PIDS+=("$!")
until grep -q listening "$DIR/broker.log"; do sleep 0.1; done
common=(--database-url "$PGURL/$DB" --kafka-brokers 127.0.0.1:29400 --partitions 8 --auth off
  --redis-url redis://127.0.0.1:26391 --join 127.0.0.1:29412 --log-level warn)
start() { # id http admin remote gossip [flags…]
  local id=$1 http=$2 admin=$3 remote=$4 gossip=$5
  shift 5
  "$BIN" serve "${common[@]}" --node-id "$id" --data-dir "$DIR/$id" --http-addr "127.0.0.1:$http" \
    --admin-addr "127.0.0.1:$admin" --remote-addr "127.0.0.1:$remote" --gossip-addr "127.0.0.1:$gossip" "$@" >"$DIR/$id.log" 2>&1 &
  PIDS+=("$!")
}
start n1 28401 29401 28411 29412
N1=$!
start n2 28402 29402 28413 29413
N2=$!
start edge 28403 29403 28414 29414 --roles ingress
EDGE=$!
for port in 28401 28402 28403; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
done
PG=$(head -1 "$(psql "$PGURL/postgres" -Atc 'SHOW data_directory')/postmaster.pid" 2>/dev/null || pgrep -o -x postgres)
printf '%-9s %7s %10s %8s %8s %12s %12s %6s %s\n' mode clients reads/s p50_ms p99_ms nodes_us/op redis+pg_us/op idle edge_hits
for c in $CLIENTS; do
  for mode in strong eventual; do
    hits0=$(curl -s http://127.0.0.1:28403/metrics | awk '/^bursar_balance_cache_hits_total/ {print $2}')
    "$BIN" bench --target http://127.0.0.1:28403 --workload reads --consistency "$mode" --accounts 2000 --partitions 8 \
      --concurrency "$c" --duration 10s --warmup 2s --funding 100 --run-id "rd$mode$c" --out "$DIR/$mode-$c.json" >"$DIR/bench-$mode-$c.txt" 2>&1 &
    BENCH=$!
    # CPU and idle are read over the measured window (after setup and
    # the 2 s warmup), the reads counted in it.
    until grep -q "setup done" "$DIR/bench-$mode-$c.txt" 2>/dev/null; do sleep 0.1; done
    sleep 2
    n0=$(scripts/cpu.py "$N1" "$N2" "$EDGE") r0=$(scripts/cpu.py "$REDIS" "$PG")
    sleep 10
    n1=$(scripts/cpu.py "$N1" "$N2" "$EDGE") r1=$(scripts/cpu.py "$REDIS" "$PG")
    wait $BENCH || { cat "$DIR/bench-$mode-$c.txt"; exit 1; }
    hits1=$(curl -s http://127.0.0.1:28403/metrics | awk '/^bursar_balance_cache_hits_total/ {print $2}')
    python3 - "$DIR/$mode-$c.json" "$mode" "$c" "$n0" "$n1" "$r0" "$r1" "${hits0:-0}" "${hits1:-0}" <<'PY'
import json, sys
a = sys.argv
r = json.load(open(a[1]))
l = r["latency_us"]
ops = r["ops"]
n0, i0, t0 = map(float, a[4].split()); n1, i1, t1 = map(float, a[5].split())
r0 = float(a[6].split()[0]); r1 = float(a[7].split()[0])
print(f'{a[2]:9s} {int(a[3]):7d} {r["ops_per_sec"]:10.0f} {l["p50"]/1000:8.2f} {l["p99"]/1000:8.2f} '
      f'{(n1-n0)/ops*1e6:12.0f} {(r1-r0)/ops*1e6:12.0f} {100*(i1-i0)/(t1-t0):5.0f}% '
      f'{float(a[9])-float(a[8]):.0f}  errors {r["errors_total"]}')
PY
  done
done
"$BIN" audit --database-url "$PGURL/$DB" --kafka-brokers 127.0.0.1:29400 --wait 60s
echo "files in $DIR"
