#!/usr/bin/env bash
# A private PostgreSQL for weir's tests and benchmarks: its own cluster, listening on 127.0.0.1
# only, trust authentication for the user `weir`. Idempotent: installs the Debian package when
# missing, creates the cluster once, starts it when it is not running, and prints the admin URL
# (tests create a fresh, uniquely named database per test from it, so two checkouts may share
# one server: when one already answers on the port, it is used).
#
# The cluster lives in /tmp/weir-postgres-<hash of this checkout's path> rather than under
# target/: the server runs as the `postgres` user, which cannot enter a checkout made in a
# private directory (mktemp -d is mode 0700).
#
#   scripts/postgres.sh start   # (default) ensure it runs, print the URL
#   scripts/postgres.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

port=${WEIR_PG_PORT:-55432}
dir=${WEIR_PG_DIR:-/tmp/weir-postgres-$(printf %s "$PWD" | sha256sum | cut -c1-12)}
url="postgres://weir@127.0.0.1:$port/postgres"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  say "installing PostgreSQL (Debian package postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

# initdb and the server refuse to run as root; as root they run as the package's `postgres` user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

case "${1:-start}" in
  stop)
    [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

if command -v psql >/dev/null && psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "$url"
  exit 0
fi

if [ ! -f "$dir/data/PG_VERSION" ]; then
  say "creating a private PostgreSQL cluster in $dir"
  mkdir -p "$dir"
  chmod 755 "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U weir --no-sync >/dev/null
fi
if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  say "starting PostgreSQL on 127.0.0.1:$port"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >/dev/null
fi
echo "$url"
