#!/usr/bin/env bash
# What identities cost (issue 15): the same `weir registry` workload anonymous and with an
# identities file of USERS users (every call carries a bearer token, hashed and compared against
# every entry in constant time, then checked against the role table), one after the other in
# one run. Loopback only; each load is bounded by time.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
USERS=${USERS:-100}
source scripts/bench_lib.sh auth

{
  for i in $(seq 1 "$USERS"); do
    printf '[[user]]\nname = "user%s"\ntoken = "token-%s"\nroles = ["reader", "submitter"]\n\n' "$i" "$i"
  done
} > "$work/identities.toml"

run() { # name, extra registry args, extra wrk args
  local name=$1; shift
  mkdir -p "$work/$name"
  target/release/weir registry --db "sqlite://$work/$name/r.db" --artifacts "$work/$name/a" \
    --http-port 0 --log warn "$@" > "$work/$name.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  local url; url=$(address "$work/$name.log")
  for _ in $(seq 1 200); do curl -sf "$url/health" >/dev/null && break; sleep 0.05; done
  local auth=(-H "Authorization: Bearer token-$USERS")
  curl -sf "${auth[@]}" -X POST "$url/api/2.0/mlflow/registered-models/create" -d '{"name": "iris"}' >/dev/null
  for path in "/health" "/api/2.0/mlflow/registered-models/get?name=iris"; do
    printf '%-12s %-46s ' "$name" "$path"
    wrk -t2 -c32 -d"$DURATION" --latency "${auth[@]}" "$url$path" \
      | awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Non-2xx/ {bad=$NF}
             END {printf "%10s req/s  p50 %8s  p99 %8s  non-2xx %s\n", rps, p50, p99, bad+0}'
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "weir registry, wrk -t2 -c32 -d$DURATION, $USERS identities, the last one's token"
run anonymous
run identities --tokens "$work/identities.toml"
