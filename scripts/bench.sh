#!/usr/bin/env bash
# `make bench`: load benchmarks on loopback (results in benches/README.md).
# Starts a release `weir serve` on the generated model repository, measures start-to-ready,
# drives it with wrk, and measures the same model in-process as the baseline, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PORT=${PORT:-18099}

for tool in wrk jq; do command -v $tool >/dev/null || { apt-get update -qq && apt-get install -y -qq $tool >/dev/null; }; done
cargo build --release --bin weir 2>&1 | tail -1
cargo build --release -p weir-benches --bins 2>&1 | tail -1
models=target/test-models

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== baseline: the iris model in-process through weir's ONNX backend"
target/release/inprocess "$models/iris/2" features 1 4 20000

echo "== weir serve: start to ready"
target/release/weir serve --model-repository "$models" --http-port "$PORT" --log warn > target/bench-serve.log &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do grep -q "ready in" target/bench-serve.log 2>/dev/null && break; sleep 0.05; done
grep "ready in" target/bench-serve.log

echo "== wrk: HTTP floor, GET /v2/health/live, 1 connection, $DURATION (loopback + wrk + hyper, no model)"
wrk -t1 -c1 -d"$DURATION" --latency "http://127.0.0.1:$PORT/v2/health/live" | grep -E 'Requests/sec|50%|99%'

url="http://127.0.0.1:$PORT/v2/models/iris/infer"
for connections in 1 32; do
  echo "== wrk: V2 JSON infer, iris [1x4], $connections connections, 1 wrk thread, $DURATION"
  wrk -t1 -c"$connections" -d"$DURATION" --latency -s benches/load/iris.lua "$url" | grep -E 'Requests/sec|Non-2xx|50%|90%|99%|requests in'
  # Inside the server: from the handler's start to the answer built (statistics extension).
  curl -s "http://127.0.0.1:$PORT/v2/models/iris/versions/2/stats" | jq -r '.model_stats[0].inference_stats as $s | "   server-side mean so far: \($s.success.ns / $s.success.count / 1000 | . * 10 | floor / 10) us per request (queue \($s.queue.ns / $s.queue.count / 1000 | . * 10 | floor / 10) us, model \($s.compute_infer.ns / $s.compute_infer.count / 1000 | . * 10 | floor / 10) us)"'
done

echo
echo "== MLP (256 -> 2048 -> 2048 -> 16, 4.7 M parameters): batching on vs off vs in-process batched"
# One row per request from 64 closed-loop clients; batching with no queue delay takes whatever
# queued while the model computed. Each setting at one and at two model instances.
bench_repo=target/bench-models
rm -rf "$bench_repo"
for instances in 1 2; do
  for mode in batched unbatched; do
    name="mlp_${mode}_x$instances"
    mkdir -p "$bench_repo/$name/1"
    cp "$models/mlp/1/model.onnx" "$bench_repo/$name/1/"
    echo "instance_count = $instances" > "$bench_repo/$name/config.toml"
    if [ $mode = batched ]; then
      printf 'max_batch_size = 64\n[dynamic_batching]\nmax_queue_delay_us = 0\n' >> "$bench_repo/$name/config.toml"
    fi
  done
done
for rows in 32 64; do
  target/release/inprocess "$models/mlp/1" x $rows 256 200 1
  target/release/inprocess "$models/mlp/1" x $rows 256 200 2
done

kill $server 2>/dev/null; wait $server 2>/dev/null || true
target/release/weir serve --model-repository "$bench_repo" --http-port "$PORT" --log warn > target/bench-serve.log &
server=$!
for _ in $(seq 1 200); do grep -q "ready in" target/bench-serve.log 2>/dev/null && break; sleep 0.05; done
for name in mlp_batched_x1 mlp_unbatched_x1 mlp_batched_x2 mlp_unbatched_x2; do
  echo "== wrk: $name, one row per request, 64 connections, $DURATION"
  wrk -t1 -c64 -d"$DURATION" --latency -s benches/load/mlp.lua "http://127.0.0.1:$PORT/v2/models/$name/infer" | grep -E 'Requests/sec|Non-2xx|50%|99%'
  curl -s "http://127.0.0.1:$PORT/v2/models/$name/stats" | jq -r '.model_stats[0] | "   executions \(.execution_count), inferences \(.inference_count), mean batch \(.inference_count / ([.execution_count, 1] | max) | floor) rows"'
done

echo
echo "== MiniLM (all-MiniLM-L6-v2, candle): ready time and sentences/s at batch 32"
kill $server 2>/dev/null; wait $server 2>/dev/null || true
target/release/weir serve --model-repository target/text-models --http-port "$PORT" --log warn > target/bench-serve.log &
server=$!
for _ in $(seq 1 200); do grep -q "ready in" target/bench-serve.log 2>/dev/null && break; sleep 0.05; done
grep "ready in" target/bench-serve.log
echo "== wrk: 32 sentences per request, 1 connection, $DURATION"
wrk -t1 -c1 -d"$DURATION" --latency -s benches/load/minilm.lua "http://127.0.0.1:$PORT/v2/models/minilm/infer" \
  | grep -E 'Requests/sec|Non-2xx|50%' | awk '/Requests\/sec/ {printf "   %s (= %.0f sentences/s)\n", $0, $2 * 32; next} {print}'
kill $server 2>/dev/null; wait $server 2>/dev/null || true
.venv/bin/python scripts/bench_embeddings.py target/text-models/minilm/1 "${DURATION%s}"

echo
echo "== router: direct vs weir route vs nginx split_clients"
scripts/bench_router.sh

echo
echo "== tracking: weir registry vs mlflow server (same client workload, both on SQLite)"
# mlflow's server: set-up installs it from PyPI into its own venv (target/mlflow-venv).
.venv/bin/python scripts/bench_tracking.py --weir target/release/weir --mlflow target/mlflow-venv/bin/mlflow
echo
echo "== tracking on PostgreSQL: weir (pool of 1, pool of 8) vs mlflow server, same server and workload"
.venv/bin/python scripts/bench_tracking.py --weir target/release/weir --mlflow target/mlflow-venv/bin/mlflow \
  --postgres "$(scripts/postgres.sh)" --json target/bench-tracking-postgres.json

echo
echo "== artifacts: 1 GiB up and down through the registry, local folder vs S3 (Garage on loopback)"
(eval "$(scripts/s3.sh)" && .venv/bin/python scripts/bench_artifacts.py --weir target/release/weir)

echo
echo "== training: weir train vs scikit-learn's MLPClassifier (same table, network and epochs)"
.venv/bin/python scripts/bench_training.py --weir target/release/weir

echo
echo "== autoscaler: scale from zero and a 4x load step"
scripts/bench_autoscale.sh
