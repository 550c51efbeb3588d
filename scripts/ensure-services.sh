#!/usr/bin/env bash
# Makes sure PostgreSQL (and, with --redis, Redis) answer on 127.0.0.1.
# Starts them when installed but down; installs them from Debian's packages
# when missing and we are root with apt; otherwise says what to install.
set -euo pipefail

want_redis=0
for a in "$@"; do [ "$a" = "--redis" ] && want_redis=1; done

say() { echo "ensure-services: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

install_pkgs() {
  if command -v apt-get >/dev/null && as_root true 2>/dev/null; then
    say "installing $* from Debian packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  if ! command -v pg_isready >/dev/null && ! command -v pg_ctlcluster >/dev/null; then
    install_pkgs postgresql || { say "PostgreSQL is not installed. Install it (Debian: apt-get install postgresql) or set DATABASE_URL to a running server."; exit 1; }
  fi
  if pg_up; then return; fi
  say "PostgreSQL is down; starting it"
  if command -v pg_ctlcluster >/dev/null; then
    for v in $(ls /etc/postgresql 2>/dev/null); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { say "PostgreSQL did not come up on 127.0.0.1:5432"; exit 1; }
  # Tests and 'make run' connect as postgres without a password, as on a
  # fresh machine of this kind (trust auth on loopback).
  psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null \
    || { say "cannot connect as postgres@127.0.0.1 (trust auth expected)"; exit 1; }
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if ! command -v redis-server >/dev/null; then
    install_pkgs redis-server || { say "Redis is not installed. Install it (Debian: apt-get install redis-server)."; exit 1; }
  fi
  if redis_up; then return; fi
  say "Redis is down; starting it"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
  redis_up || { say "Redis did not come up on 127.0.0.1:6379"; exit 1; }
}

ensure_postgres
[ "$want_redis" = 1 ] && ensure_redis
say "ok"
