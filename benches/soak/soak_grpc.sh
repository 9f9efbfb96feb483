#!/usr/bin/env bash
# gRPC soak (benches/soak): legitimate gRPC ModelInfer load (h2load: 4 connections × 8 streams,
# iris) through `weir route`'s gRPC port to a `weir serve` replica's, with the hostile HTTP/2
# clients of benches/soak/hostile_grpc.py against both gRPC ports at once, for SOAK_SECONDS
# (default 300). Reports failed legitimate calls (HTTP failures and calls whose answer carried no
# message, i.e. a gRPC error), the rate and mean latency before and during, what the attackers
# met, and each process's resident memory every SAMPLE seconds and at its peak (VmHWM).
# Loopback only; every loop is bounded by time.
set -euo pipefail
cd "$(dirname "$0")/../.."
SOAK_SECONDS=${SOAK_SECONDS:-300}
BASELINE_SECONDS=${BASELINE_SECONDS:-30}
SAMPLE=${SAMPLE:-30}
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
[ -x .venv/bin/python ] || scripts/setup.sh
source scripts/bench_lib.sh soak-grpc

start_serve_and_route iris:2
.venv/bin/python benches/load/grpc_bodies.py write "$work/bodies"
size=$(.venv/bin/python benches/load/grpc_bodies.py check "$route_grpc" "$work/bodies/iris.grpc")

processes=("route=$route_pid" "serve=$serve_pid")
legit() { # SECONDS
  local out
  out=$(h2load -D "$1" -t1 -c4 -m8 -d "$work/bodies/iris.grpc" -H content-type:application/grpc \
    -H te:trailers "http://$route_grpc/inference.GRPCInferenceService/ModelInfer")
  echo "$out" | grep -E "^finished in|^requests:|^time for request:" | sed 's/^/   /'
  echo "   failed legitimate calls: $(h2load_failures "$out" "$size")"
}
metric() { curl -s "$1/metrics" | awk -v name="$2" '$1 == name {print $2}'; }

echo "== baseline: ${BASELINE_SECONDS}s of legitimate gRPC load through the router, no hostile clients"
legit "$BASELINE_SECONDS"
echo "rss after warm-up (KiB): $(memory rss "${processes[@]}")"

echo "== soak: ${SOAK_SECONDS}s of legitimate gRPC load with hostile HTTP/2 clients against both gRPC ports"
.venv/bin/python benches/soak/hostile_grpc.py "$route_grpc" "$SOAK_SECONDS" > "$work/hostile-router.json" &
hostile_router=$!
.venv/bin/python benches/soak/hostile_grpc.py "$serve_grpc" "$SOAK_SECONDS" > "$work/hostile-serve.json" &
hostile_serve=$!
sample_memory "$SOAK_SECONDS" "${processes[@]}"
legit "$SOAK_SECONDS"
wait "$hostile_router" "$hostile_serve" || true
kill "$sampler" 2>/dev/null || true
echo "hostile against the router: $(cat "$work/hostile-router.json")"
echo "hostile against serve: $(cat "$work/hostile-serve.json")"
for name in weir_http_protocol_errors_total weir_http_header_timeouts_total weir_http_slow_bodies_total; do
  echo "$name: route $(metric "$route_http" $name) serve $(metric "$serve_http" $name)"
done
echo "peak rss (VmHWM, KiB): $(memory hwm "${processes[@]}")"
