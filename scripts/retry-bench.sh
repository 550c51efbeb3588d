#!/usr/bin/env bash
# Measures the idempotency fast path: the retry workload (every credit
# sent twice) against one node with Redis (--redis-url, the fast path on)
# and the same node without it, at 8 and 64 closed-loop clients, each on a
# fresh database and data directory. Needs redis-server; starts its own on
# 127.0.0.1:26390. Loopback only; bounded.
#   scripts/retry-bench.sh [bin/bursar]
set -euo pipefail
BIN=${1:-bin/bursar}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DIR=$(mktemp -d)
redis-server --port 26390 --bind 127.0.0.1 --save "" --appendonly no >"$DIR/redis.log" 2>&1 &
REDIS=$!
trap 'kill $REDIS 2>/dev/null || true' EXIT
sleep 0.5
for mode in redis none; do
  for c in 8 64; do
    db=retrybench_${mode}_$c
    psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    extra=()
    [ "$mode" = redis ] && extra=(--redis-url redis://127.0.0.1:26390)
    "$BIN" serve --database-url "$PGURL/$db" --data-dir "$DIR/data-$mode-$c" --partitions 8 --auth off \
      --http-addr 127.0.0.1:28180 --admin-addr 127.0.0.1:29190 --remote-addr 127.0.0.1:28191 --gossip-addr 127.0.0.1:28192 \
      "${extra[@]}" >"$DIR/node-$mode-$c.log" 2>&1 &
    node=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:28180/readyz >/dev/null && break; sleep 0.2; done
    "$BIN" bench --target http://127.0.0.1:28180 --workload retry --accounts 2000 --partitions 8 --concurrency "$c" \
      --duration 10s --warmup 2s --run-id "r$mode$c" --out "$DIR/$mode-$c.json" --database-url "$PGURL/$db" >"$DIR/bench-$mode-$c.txt" 2>&1
    hits=$(curl -s http://127.0.0.1:28180/metrics | awk '/^bursar_idempotency_cache_hits_total/ {print $2}')
    kill $node; wait $node 2>/dev/null || true
    python3 - "$DIR/$mode-$c.json" "$mode" "$c" "${hits:-0}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_us"]
print(f'{sys.argv[2]:5s} {int(sys.argv[3]):3d} clients: {r["ops_per_sec"]:8.0f} ops/s  p50 {l["p50"]/1000:6.2f} ms  p99 {l["p99"]/1000:6.2f} ms  errors {r["errors_total"]}  cache hits {sys.argv[4]}')
PY
    grep -q "audit: CLEAN" "$DIR/bench-$mode-$c.txt" && echo "      audit clean" || { echo "      audit NOT clean"; tail -20 "$DIR/bench-$mode-$c.txt"; }
  done
done
echo "files in $DIR"
