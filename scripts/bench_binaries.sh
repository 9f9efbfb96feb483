#!/usr/bin/env bash
# Two builds of weir side by side on the iris model: each serves the test repository in turn and
# wrk drives V2 JSON infer at 32 connections, alternating A, B, A, B so drift on a shared machine
# falls on both. For build changes (profiles, LTO): `scripts/bench_binaries.sh OLD NEW`.
#   ROUNDS (default 2), DURATION (default 10s)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 WEIR_BINARY_A WEIR_BINARY_B" >&2; exit 2; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
rounds=${ROUNDS:-2}
duration=${DURATION:-10s}
work=$(mktemp -d /tmp/weir-bench-binaries.XXXXXX)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/repo/iris/2"
cp target/test-models/iris/2/model.onnx "$work/repo/iris/2/"

for round in $(seq 1 "$rounds"); do
  for binary in "$1" "$2"; do
    "$binary" serve --model-repository "$work/repo" --http-port 0 --log warn > "$work/serve.log" 2>&1 &
    server=$!
    url=
    for _ in $(seq 1 200); do
      url=$(grep -m1 -o 'http://[0-9.:]*' "$work/serve.log" 2>/dev/null) && break
      sleep 0.05
    done
    for _ in $(seq 1 200); do curl -sf "$url/v2/health/ready" >/dev/null && break; sleep 0.05; done
    rate=$(wrk -t1 -c32 -d"$duration" -s benches/load/iris.lua "$url/v2/models/iris/infer" | grep -E 'Requests/sec' | awk '{print $2}')
    printf 'round %s  %-40s %10s req/s\n' "$round" "$binary" "$rate"
    kill "$server"; wait "$server" 2>/dev/null || true; server=
  done
done
