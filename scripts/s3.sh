#!/usr/bin/env bash
# A private S3-compatible store for weir's tests and benchmarks: Garage (crates.io `garage`, a
# production S3 implementation), one node listening on 127.0.0.1 only, with a test bucket and key.
# Idempotent: builds Garage once into a cache outside the checkout (a cold build takes minutes),
# creates the node's layout, key and bucket once, starts the server when it is not running, and
# prints `export` lines for the standard AWS variables:
#
#   eval "$(scripts/s3.sh)"     # (or `scripts/s3.sh start`) ensure it runs, print the exports
#   scripts/s3.sh stop
#   scripts/s3.sh install       # only build Garage when it is missing (make setup)
#
# The key is a fixed test credential for a store that only listens on loopback; it guards nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

garage_version=2.5.0
tools=${WEIR_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/tools}
garage=$tools/bin/garage
# One server per machine user, whichever checkout starts it: the port is fixed, so two checkouts
# (a fresh clone beside a working one) share it, as they share scripts/postgres.sh's server.
dir=${WEIR_S3_DIR:-/tmp/weir-garage-$(id -u)}
s3_port=${WEIR_S3_PORT:-53900}
rpc_port=$((s3_port + 1))
bucket=weir-test
key_id=GK0123456789abcdef01234567
key_secret=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! "$garage" --version 2>/dev/null | grep -q "cargo:$garage_version "; then
  say "building Garage $garage_version from crates.io into $tools (once; takes minutes)"
  mkdir -p "$tools"
  # The SQLite metadata engine only: LMDB, metrics and K2V are not needed for tests.
  CARGO_TARGET_DIR="$tools/garage-build" cargo install --quiet --locked garage \
    --version "$garage_version" --no-default-features --features bundled-libs,sqlite \
    --root "$tools" >&2
  rm -rf "$tools/garage-build"
fi

command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
config=$dir/garage.toml
cli() { "$garage" -c "$config" "$@"; }

case "${1:-start}" in
  install) exit 0 ;;
  stop)
    pkill -f -- "-c $dir/garage.toml server" 2>/dev/null || true
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|install]" >&2; exit 2 ;;
esac

if [ ! -f "$config" ]; then
  mkdir -p "$dir/meta" "$dir/data"
  cat > "$config" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"
EOF
fi

# Running means answering on its RPC port with this configuration's secret, whoever started it.
running() { cli status >/dev/null 2>&1; }
if ! running; then
  say "starting Garage on 127.0.0.1:$s3_port"
  # Every descriptor redirected on the whole background job: a shell left holding this script's
  # stdout would keep `eval "$(scripts/s3.sh)"` waiting for as long as Garage runs.
  (cd "$dir" && exec setsid "$garage" -c "$config" server) </dev/null >"$dir/log" 2>&1 &
  for _ in $(seq 1 100); do
    running && break
    sleep 0.1
  done
  running || { echo "Garage did not start; see $dir/log" >&2; exit 1; }
fi

if [ ! -f "$dir/.provisioned" ]; then
  say "creating Garage's layout, the test key and the bucket $bucket"
  node=$(cli node id -q | cut -d@ -f1)
  cli layout assign -z local -c 1G "$node" >/dev/null
  cli layout apply --version 1 >/dev/null
  cli key import --yes -n weir-test "$key_id" "$key_secret" >/dev/null
  cli bucket create "$bucket" >/dev/null
  cli bucket allow --read --write --owner "$bucket" --key weir-test >/dev/null
  touch "$dir/.provisioned"
fi

cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$key_secret
export AWS_REGION=garage
export AWS_DEFAULT_REGION=garage
export AWS_ALLOW_HTTP=true
export WEIR_TEST_S3_BUCKET=$bucket
EOF
