#!/usr/bin/env bash
# smoke-ci.sh: the k6 smoke scenario end to end, for CI. Builds bursar,
# creates a fresh PostgreSQL database, starts one node on free ports (with
# its embedded broker in a temporary data dir), waits for /readyz, runs
# k6/smoke.js, stops the node with SIGTERM, runs `bursar audit`, and drops
# the database. It exits non-zero if k6's thresholds fail, the node does not
# stop cleanly, or the audit is not clean; everything it started is cleaned
# up on any exit.
#
# About 30s once k6 is installed (k6 is installed through `make -f
# k6/k6.mk k6-install` when missing, which compiles it: a few minutes).
#
# Env: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres): the server the
# database is created on; K6 (path of the k6 binary; default
# $(go env GOPATH)/bin/k6); K6_SUMMARY_DIR (k6/out): where the summaries go;
# K6_ENV: extra k6 arguments (e.g. "-e DURATION=20s"); BURSAR_BIN: a
# bursar binary to use instead of building one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-5432}"
PGUSER="${PGUSER:-postgres}"
export PGHOST PGPORT PGUSER
K6_SUMMARY_DIR="${K6_SUMMARY_DIR:-$ROOT/k6/out}"

say() { echo "smoke-ci: $*" >&2; }

tmp="$(mktemp -d -t bursar-k6-smoke.XXXXXX)"
db="bursar_k6_smoke_$$_${RANDOM}"
db_url="postgres://${PGUSER}@${PGHOST}:${PGPORT}/${db}?sslmode=disable"
node_pid=""
k6_pid=""
db_created=0

# stop_node sends SIGTERM and waits (up to 45s: the node's shutdown timeout
# is 30s) before SIGKILL; it sets node_rc to the node's exit status.
node_rc=0
stop_node() {
  [ -n "$node_pid" ] || return 0
  if kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    for _ in $(seq 1 450); do
      kill -0 "$node_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$node_pid" 2>/dev/null; then
      say "node did not stop within 45s of SIGTERM; killing it"
      kill -KILL "$node_pid" 2>/dev/null || true
    fi
  fi
  node_rc=0
  wait "$node_pid" 2>/dev/null || node_rc=$?
  node_pid=""
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$k6_pid" ]; then
    kill -TERM "$k6_pid" 2>/dev/null
    wait "$k6_pid" 2>/dev/null
  fi
  stop_node
  if [ "$db_created" = 1 ]; then
    psql -d postgres -qX -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null \
      || say "could not drop database $db"
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports prints n TCP ports free on 127.0.0.1 (bound and released by
# the kernel: another process could still take one before the node does,
# which then fails to start and is reported as such).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

start=$(date +%s)

# k6 (a no-op when the pinned version is installed).
K6="${K6:-$("$GO" env GOPATH | cut -d: -f1)/bin/k6}"
make -s -C "$ROOT" -f k6/k6.mk k6-install K6="$K6" GO="$GO" >&2

# PostgreSQL up, when this machine manages it.
if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null && [ -f "$ROOT/scripts/ensure-services.sh" ]; then
  bash "$ROOT/scripts/ensure-services.sh"
fi

if [ -n "${BURSAR_BIN:-}" ]; then
  say "using $BURSAR_BIN"
  cp "$BURSAR_BIN" "$tmp/bursar"
else
  say "building bursar"
  (cd "$ROOT" && "$GO" build -o "$tmp/bursar" ./cmd/bursar)
fi

say "creating database $db"
psql -d postgres -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db\"" >/dev/null
db_created=1

say "creating an API key"
api_key="$("$tmp/bursar" apikey create --database-url "$db_url" --name k6-smoke --scopes all --format json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"

read -r http_port gossip_port remote_port <<<"$(free_ports 3)"
base_url="http://127.0.0.1:${http_port}"
say "starting node on $base_url"
"$tmp/bursar" serve \
  --database-url "$db_url" \
  --data-dir "$tmp/data" \
  --http-addr "127.0.0.1:${http_port}" \
  --gossip-addr "127.0.0.1:${gossip_port}" \
  --remote-addr "127.0.0.1:${remote_port}" \
  --partitions 8 \
  >"$tmp/node.log" 2>&1 &
node_pid=$!

ready=0
for _ in $(seq 1 300); do # 30s
  if ! kill -0 "$node_pid" 2>/dev/null; then
    break
  fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base_url/readyz")" = 200 ]; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  say "node did not become ready; its log:"
  tail -n 50 "$tmp/node.log" >&2
  exit 1
fi
say "node ready after $(( $(date +%s) - start ))s"

mkdir -p "$K6_SUMMARY_DIR"
k6_rc=0
# shellcheck disable=SC2086 # K6_ENV is a list of arguments
# In the background so that a signal to this script is handled at once
# (bash runs traps only between foreground commands); cleanup stops it.
timeout 120 "$K6" run --quiet -e BASE_URL="$base_url" -e API_KEY="$api_key" -e OUT_DIR="$K6_SUMMARY_DIR" ${K6_ENV:-} "$ROOT/k6/smoke.js" &
k6_pid=$!
wait "$k6_pid" || k6_rc=$?
k6_pid=""

node_died=0
if ! kill -0 "$node_pid" 2>/dev/null; then
  node_died=1 # before we asked it to: a crash, or someone else's signal
fi
say "stopping node (SIGTERM)"
stop_node
if [ "$node_died" = 1 ] || [ "$node_rc" != 0 ]; then
  [ "$node_died" = 1 ] && say "node exited on its own during the run (status $node_rc)"
  say "node exit status $node_rc; the end of its log:"
  tail -n 30 "$tmp/node.log" >&2
  [ "$node_rc" != 0 ] || node_rc=1
fi

say "auditing"
audit_rc=0
timeout 120 "$tmp/bursar" audit --database-url "$db_url" || audit_rc=$?

say "k6 exit $k6_rc, node exit $node_rc, audit exit $audit_rc; $(( $(date +%s) - start ))s; summary in $K6_SUMMARY_DIR/smoke-summary.txt"
if [ "$k6_rc" != 0 ] || [ "$node_rc" != 0 ] || [ "$audit_rc" != 0 ]; then
  [ "$k6_rc" != 0 ] && say "FAIL: k6 thresholds or run (exit $k6_rc; 99 means thresholds crossed)"
  [ "$node_rc" != 0 ] && say "FAIL: node died during the run or did not shut down cleanly"
  [ "$audit_rc" != 0 ] && say "FAIL: audit (exit $audit_rc: 1 violation, 2 could not check)"
  exit 1
fi
say "PASS"
