#!/usr/bin/env bash
# Measures `bursar partitions scale --to $TO` under load: a node with $FROM
# partitions (embedded broker, fresh database), a closed-loop run to find
# its throughput, then an open-loop run at half of it during which the
# scale runs. Prints the scale's output, the run's per-second throughput
# and p99 (from bench --out), and the audit. Loopback only; bounded.
#   scripts/scale-bench.sh [bin/bursar]
set -euo pipefail
BIN=${1:-bin/bursar}
FROM=${FROM:-8} TO=${TO:-16} WORKLOAD=${WORKLOAD:-uniform} ACCOUNTS=${ACCOUNTS:-2000}
DB=${DB:-scalebench}
PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DIR=$(mktemp -d)
HTTP=127.0.0.1:28080 ADMIN=127.0.0.1:29090
psql "$PGURL/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"$BIN" serve --database-url "$PGURL/$DB" --data-dir "$DIR/data" --partitions "$FROM" --auth off \
  --http-addr "$HTTP" --admin-addr "$ADMIN" --remote-addr 127.0.0.1:28091 --gossip-addr 127.0.0.1:28092 >"$DIR/node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null; wait $NODE 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" >/dev/null && break; sleep 0.2; done
"$BIN" bench --target "http://$HTTP" --workload "$WORKLOAD" --accounts "$ACCOUNTS" --partitions "$FROM" \
  --concurrency 64 --duration 10s --warmup 2s --run-id closed --out "$DIR/closed.json" >/dev/null
MAX=$(python3 -c "import json;print(json.load(open('$DIR/closed.json'))['ops_per_sec'])" 2>/dev/null || jq .ops_per_sec "$DIR/closed.json")
RATE=$(python3 -c "print(int($MAX/2))")
echo "closed loop at 64 clients: $MAX ops/s; open loop at $RATE ops/s for 40s, scaling $FROM → $TO 15s in"
"$BIN" bench --target "http://$HTTP" --workload "$WORKLOAD" --accounts "$ACCOUNTS" --partitions "$FROM" \
  --rate "$RATE" --concurrency 256 --duration 40s --warmup 2s --run-id open --out "$DIR/open.json" \
  --database-url "$PGURL/$DB" >"$DIR/open.txt" 2>&1 &
BENCH=$!
until grep -q "setup done" "$DIR/open.txt" 2>/dev/null; do sleep 0.2; done
sleep 17 # warmup 2s + 15s into the measured window
date +%s.%N >"$DIR/scale.start"
"$BIN" partitions scale --to "$TO" --addr "$ADMIN"
wait $BENCH || { cat "$DIR/open.txt"; exit 1; }
python3 - "$DIR/open.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("second  ops/s   p99 ms")
for s in r["series"]:
    print(f'{s["second"]:6d}  {s["ops"]:6d}  {s["p99_us"]/1000:7.1f}  errors {s["errors"]}')
print("overall p99 ms", r["latency_us"]["p99"] / 1000, "errors", r["errors_total"])
PY
tail -5 "$DIR/open.txt"
"$BIN" audit --database-url "$PGURL/$DB"
echo "files in $DIR"
