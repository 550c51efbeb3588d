#!/usr/bin/env bash
# Measures the idempotency fast path: the retry workload (every credit
# sent twice) against one node with the fast path (--redis-url
# --redis-idempotency; the balance cache off, to measure the fast path alone)
# and the same node without it, at 1, 8, 64 and 256 closed-loop clients
# (CLIENTS), with CPU per operation and idle CPU, each on a
# fresh database and data directory. Needs redis-server; starts its own on
# 127.0.0.1:26390. Loopback only; bounded.
#   scripts/retry-bench.sh [bin/bursar]
set -euo pipefail
BIN=${1:-bin/bursar}
CLIENTS=${CLIENTS:-1 8 64 256}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DIR=$(mktemp -d)
redis-server --port 26390 --bind 127.0.0.1 --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
sleep 0.5
PG=$(head -1 "$(psql "$PGURL/postgres" -Atc 'SHOW data_directory')/postmaster.pid" 2>/dev/null || pgrep -o -x postgres)
for mode in redis none; do
  for c in $CLIENTS; do
    db=retrybench_${mode}_$c
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    extra=()
    [ "$mode" = redis ] && extra=(--redis-url redis://127.0.0.1:26390 --redis-idempotency --redis-balances=false)
    "$BIN" serve --database-url "$PGURL/$db" --data-dir "$DIR/data-$mode-$c" --partitions 8 --auth off \
      --http-addr 127.0.0.1:28180 --admin-addr 127.0.0.1:29190 --remote-addr 127.0.0.1:28191 --gossip-addr 127.0.0.1:28192 \
      "${extra[@]}" >"$DIR/node-$mode-$c.log" 2>&1 &
    node=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:28180/readyz >/dev/null && break; sleep 0.2; done
    "$BIN" bench --target http://127.0.0.1:28180 --workload retry --accounts 2000 --partitions 8 --concurrency "$c" \
      --duration 10s --warmup 2s --run-id "r$mode$c" --out "$DIR/$mode-$c.json" --database-url "$PGURL/$db" >"$DIR/bench-$mode-$c.txt" 2>&1 &
    bench=$!
    # CPU (the node; Redis and PostgreSQL with its backends) and idle over
    # the measured window: after setup and the 2 s warmup.
    until grep -q "setup done" "$DIR/bench-$mode-$c.txt" 2>/dev/null; do sleep 0.1; done
    sleep 2
    n0=$(scripts/cpu.py "$node") s0=$(scripts/cpu.py "$REDIS" "$PG")
    sleep 10
    n1=$(scripts/cpu.py "$node") s1=$(scripts/cpu.py "$REDIS" "$PG")
    wait $bench || true
    hits=$(curl -s http://127.0.0.1:28180/metrics | awk '/^bursar_idempotency_cache_hits_total/ {print $2}')
    kill $node; wait $node 2>/dev/null || true
    python3 - "$DIR/$mode-$c.json" "$mode" "$c" "${hits:-0}" "$n0" "$n1" "$s0" "$s1" <<'PY'
import json, sys
a = sys.argv
r = json.load(open(a[1]))
l = r["latency_us"]
n0, i0, t0 = map(float, a[5].split()); n1, i1, t1 = map(float, a[6].split())
s0 = float(a[7].split()[0]); s1 = float(a[8].split()[0])
ops = r["ops"]
print(f'{a[2]:5s} {int(a[3]):3d} clients: {r["ops_per_sec"]:8.0f} ops/s  p50 {l["p50"]/1000:6.2f} ms  p99 {l["p99"]/1000:6.2f} ms  '
      f'node {(n1-n0)/ops*1e6:4.0f} µs/op  redis+pg {(s1-s0)/ops*1e6:4.0f} µs/op  idle {100*(i1-i0)/(t1-t0):3.0f}%  errors {r["errors_total"]}  cache hits {a[4]}')
PY
    grep -q "audit: CLEAN" "$DIR/bench-$mode-$c.txt" && echo "      audit clean" || { echo "      audit NOT clean"; tail -20 "$DIR/bench-$mode-$c.txt"; }
  done
done
echo "files in $DIR"
