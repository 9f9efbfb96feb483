#!/usr/bin/env bash
# Autoscaler benchmark (part of `make bench`): how fast the first response comes from zero
# replicas, and how long from a 4x load step to the scale-up decision. Local replicas of the
# MLP model (a few ms per request, so requests in flight follow the offered concurrency) behind
# `weir route`, all on loopback; every load is bounded by time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh autoscale

# Each model in its own repository, routed with no replicas yet: the autoscaler adds them.
for model in iris mlp; do
  mkdir -p "$work/repo-$model/$model/1"
  cp "target/test-models/$model/1/model.onnx" "$work/repo-$model/$model/1/"
  printf '[[route]]\nmodel = "%s"\n[[route.backend]]\nversion = "1"\nendpoints = []\nweight = 100\n' "$model"
done > "$work/routes.toml"
target/release/weir route --config "$work/routes.toml" --http-port 0 --admin-port 0 --log warn > "$work/route.log" &
pids+=($!)
router=$(address "$work/route.log")
# The admin API (where the autoscaler adds replicas) is announced on the second line.
for _ in $(seq 1 200); do
  admin=$(grep -m1 -o 'admin API on http://[0-9.:]*' "$work/route.log" | grep -o 'http://.*') && break
  sleep 0.05
done
[ -n "${admin:-}" ] || { echo "no admin API address in $work/route.log" >&2; exit 1; }
cat > "$work/autoscaler.toml" <<SCALER
[[target]]
name = "iris"
scaler = { kind = "local", model = "iris", version = "1", repository = "$work/repo-iris", router = "$admin" }
signal = { kind = "scrape" }
policy = { target = 10, min_replicas = 0, max_replicas = 4 }

[[target]]
name = "mlp"
scaler = { kind = "local", model = "mlp", version = "1", repository = "$work/repo-mlp", router = "$admin" }
signal = { kind = "scrape" }
policy = { target = 2, min_replicas = 1, max_replicas = 8 }
SCALER
RUST_LOG=info target/release/weir autoscale --config "$work/autoscaler.toml" --http-port 0 --log-format json > "$work/autoscale.log" 2> "$work/autoscale.err" &
pids+=($!)
autoscaler=$(address "$work/autoscale.log")
for _ in $(seq 1 200); do curl -s "$admin/admin/v1/routes/mlp" | grep -q '"available":true' && break; sleep 0.05; done

echo "== scale from zero: iris, the first request while no replica runs"
curl -s -o /dev/null -w "   first response after %{time_total} s (status %{http_code})\n" -X POST "$router/v2/models/iris/infer" \
  -H 'Content-Type: application/json' -d '{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}'
curl -s "$autoscaler/metrics" | grep -E '^weir_autoscaler_cold_start_seconds_(sum|count)\{target="iris"' | sed 's/^/   /' || true

echo "== 4x load step on mlp: 2 connections for 15 s, then 8"
wrk -t1 -c2 -d15s -s benches/load/mlp.lua "$router/v2/models/mlp/infer" > /dev/null
step=$(date +%s.%N)
wrk -t1 -c8 -d10s -s benches/load/mlp.lua "$router/v2/models/mlp/infer" | grep -E 'Requests/sec|Non-2xx' || true
python3 - "$work/autoscale.err" "$step" <<'PY'
import json, sys, datetime
step = float(sys.argv[2])
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    fields = event.get("fields", {})
    if fields.get("message") != "scaling" or fields.get("target") != "mlp":
        continue
    at = datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    if at >= step and fields.get("to", 0) > fields.get("from", 0):
        print(f"   first scale-up decision {at - step:.2f} s after the step: {fields['from']} -> {fields['to']} replicas (panic {fields.get('panic')})")
        break
else:
    print("   no scale-up decision after the step")
PY
