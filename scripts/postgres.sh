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

# TLS, for the tests of `sslmode=verify-full`: a private CA signs the server's certificate (for
# 127.0.0.1 and localhost); a second CA that signed nothing stands in for a stranger's. Turned on
# with a reload, so a server that was already running (another checkout's) gets it as well.
# Clients that do not ask for TLS are still served in the clear.
ensure_tls() {
  [ "$(psql "$url" -Atqc 'show ssl')" = on ] && return 0
  local tls
  tls=$(dirname "$(psql "$url" -Atqc 'show data_directory')")/tls
  if [ ! -f "$tls/server.crt" ]; then
    command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
    say "creating TLS certificates for the test server in $tls"
    mkdir -p "$tls"
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir test $ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$tls/$ca.key" -out "$tls/$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > "$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
      -days 3650 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
    chmod 755 "$tls"
    chmod 644 "$tls/ca.pem" "$tls/other-ca.pem" "$tls/server.crt"
    chmod 600 "$tls/server.key" "$tls/ca.key" "$tls/other-ca.key"
    if [ "$(id -u)" = 0 ]; then chown postgres "$tls/server.key" "$tls/server.crt"; fi
  fi
  psql "$url" -q -c "ALTER SYSTEM SET ssl_cert_file = '$tls/server.crt'" \
    -c "ALTER SYSTEM SET ssl_key_file = '$tls/server.key'" -c "ALTER SYSTEM SET ssl = on" \
    -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 50); do
    [ "$(psql "$url" -Atqc 'show ssl')" = on ] && return 0
    sleep 0.1
  done
  echo "PostgreSQL did not turn TLS on; see its log" >&2
  return 1
}

if command -v psql >/dev/null && psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  ensure_tls
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
ensure_tls
echo "$url"
