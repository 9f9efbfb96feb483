#!/usr/bin/env bash
# One call at a time, looked at closely (benches/README.md "gRPC", "Per call"): for iris on a
# release `weir serve` and through a one-worker `weir route` in front of it, gRPC against
# HTTP/JSON, with h2load (Debian's nghttp2-client):
#   - calls/s and the CPU time each process spent per call (utime + stime from /proc over CALLS
#     calls; ONNX Runtime's threads spin while they wait, so this is near the wall time),
#   - the system calls each process made per call (strace -c over the same calls), which is how
#     the router's two writes per call to a replica (HEADERS, then DATA) were found.
# Every load is CALLS calls (default 20000; 2000 under strace); it stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${CALLS:-20000}
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
source scripts/bench_lib.sh grpc-calls # release `weir`, $work, pids, cleanup, address

.venv/bin/python benches/load/grpc_bodies.py write "$work/bodies"
ROUTE_ARGS="--workers 1" start_serve_and_route iris:2

load() { # TARGET PROTOCOL CALLS: one h2load run, one call at a time
  local base grpc
  if [ "$1" = serve ]; then base=$serve_http grpc=$serve_grpc; else base=$route_http grpc=$route_grpc; fi
  if [ "$2" = gRPC ]; then
    h2load -n "$3" -c1 -m1 -d "$work/bodies/iris.grpc" -H content-type:application/grpc -H te:trailers \
      "http://$grpc/inference.GRPCInferenceService/ModelInfer"
  else
    h2load -n "$3" -c1 --h1 -d "$work/bodies/iris.json" -H content-type:application/json "$base/v2/models/iris/infer"
  fi
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_call() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }'; }

echo "== $(nproc) cores; $CALLS calls per row, one at a time"
echo "| target | protocol | calls/s | weir route CPU µs/call | weir serve CPU µs/call |"
echo "| --- | --- | --- | --- | --- |"
for round in 1 2; do
  for target in serve route; do
    for protocol in gRPC HTTP/JSON; do
      load "$target" "$protocol" 500 >/dev/null
      r0=$(ticks "$route_pid"); s0=$(ticks "$serve_pid")
      rate=$(load "$target" "$protocol" "$CALLS" | awk '/^finished in/ {printf "%.0f", $4}')
      r1=$(ticks "$route_pid"); s1=$(ticks "$serve_pid")
      echo "| weir $target (round $round) | $protocol | $rate | $(per_call $((r1 - r0)) "$CALLS") | $(per_call $((s1 - s0)) "$CALLS") |"
    done
  done
done

echo
echo "== system calls per call (strace -c -f, 2000 calls; the traced process only)"
for target in serve route; do
  pid=$serve_pid
  if [ "$target" = route ]; then pid=$route_pid; fi
  for protocol in gRPC HTTP/JSON; do
    strace -f -c -o "$work/strace" -p "$pid" 2>/dev/null &
    tracer=$!
    sleep 1
    load "$target" "$protocol" 2000 >/dev/null
    kill -INT "$tracer"
    wait "$tracer" 2>/dev/null || true
    echo "weir $target, $protocol: $(awk -v n=2000 'NR > 2 && $4 ~ /^[0-9]+$/ && $NF != "total" && $4 / n >= 0.05 { printf "%s %.2f, ", $NF, $4 / n }' "$work/strace")"
  done
done
