#!/usr/bin/env bash
# Soak (benches/soak): mixed legitimate load through `weir route` → two `weir serve` replicas,
# with hostile clients (benches/soak/hostile.py) interleaved against both the router and a
# replica, for SOAK_SECONDS (default 600). Reports failed legitimate requests, p99 before and
# during, and each process's resident memory every SAMPLE seconds and at its peak (VmHWM).
# Loopback only; every loop is bounded by time.
set -euo pipefail
cd "$(dirname "$0")/../.."
SOAK_SECONDS=${SOAK_SECONDS:-600}
BASELINE_SECONDS=${BASELINE_SECONDS:-30}
SAMPLE=${SAMPLE:-30}
source scripts/bench_lib.sh soak

start_iris_replicas
write_iris_routes "$work/routes.toml"
target/release/weir route --config "$work/routes.toml" --http-port 0 --admin-port 0 --log warn > "$work/route.log" 2>&1 &
pids+=($!)
route_pid=$!
router=$(address "$work/route.log")
for _ in $(seq 1 200); do curl -sf "$router/v2/health/live" >/dev/null && break; sleep 0.05; done

processes=("route=$route_pid" "serve-1=${serve_pids[0]}" "serve-2=${serve_pids[1]}")
# wrk prints non-2xx answers and socket errors; both count as failed legitimate requests.
legit() {
  wrk -t2 -c32 -d"$1"s --latency -s benches/load/iris.lua "$router/v2/models/iris/infer" > "$2"
  grep -E "requests in|Requests/sec|99%|Non-2xx|Socket errors|status [0-9]|socket errors" "$2" || true
}

echo "== baseline: ${BASELINE_SECONDS}s of legitimate load, no hostile clients"
legit "$BASELINE_SECONDS" "$work/baseline.txt"
echo "rss after warm-up (KiB): $(memory rss "${processes[@]}")"

echo "== soak: ${SOAK_SECONDS}s of legitimate load with hostile clients against router and replica"
.venv/bin/python benches/soak/hostile.py "$router" "$SOAK_SECONDS" > "$work/hostile-router.json" &
hostile_router=$!
.venv/bin/python benches/soak/hostile.py "$v1" "$SOAK_SECONDS" > "$work/hostile-serve.json" &
hostile_serve=$!
sample_memory "$SOAK_SECONDS" "${processes[@]}"
legit "$SOAK_SECONDS" "$work/soak.txt"
wait "$hostile_router" "$hostile_serve" || true
kill "$sampler" 2>/dev/null || true
echo "hostile against router: $(cat "$work/hostile-router.json")"
echo "hostile against serve-1: $(cat "$work/hostile-serve.json")"
echo "peak rss (VmHWM, KiB): $(memory hwm "${processes[@]}")"
