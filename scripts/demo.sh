#!/usr/bin/env bash
# `make demo`: serve an example model repository and show predictions over V2 and V1.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-8080}
repo=demo-repository

for tool in curl jq; do
  command -v $tool >/dev/null || { apt-get update -qq && apt-get install -y -qq $tool >/dev/null; }
done
run() {
  printf '\n\033[1m$ %s\033[0m\n' "$*"
  "$@"
  echo
}

.venv/bin/python scripts/make_models.py "$repo" --demo
# The sentence-embedding model (90 MB, from the PyPI package set-up installed) joins by link.
ln -s "$PWD/target/text-models/minilm" "$repo/minilm"
# A model trained here, from a CSV, served beside the others as version 1 of iris_trained.
.venv/bin/python scripts/iris_csv.py target/demo-data/iris.csv
run target/release/weir train --data target/demo-data/iris.csv --target species --epochs 60 \
  --out "$repo/iris_trained/1"

target/release/weir serve --model-repository "$repo" --http-port "$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { echo "weir serve exited; see its log above" >&2; exit 1; }
  sleep 0.1
done

echo
echo "weir is serving $repo on http://127.0.0.1:$port — try these:"
run curl -s "http://127.0.0.1:$port/v2/models/iris"
run curl -s -X POST "http://127.0.0.1:$port/v2/models/iris/infer" \
  -d '{"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}'
run curl -s -X POST "http://127.0.0.1:$port/v1/models/iris:predict" -d '{"instances": [[5.9, 3.0, 5.1, 1.8]]}'
echo "The model trained above answers class labels over V1 (its scaler travels with it):"
run curl -s -X POST "http://127.0.0.1:$port/v1/models/iris_trained:predict" \
  -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]}'
run curl -s -X POST "http://127.0.0.1:$port/v2/models/string_upper/infer" \
  -d '{"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "weir"]}]}'
echo "Sentence embeddings (all-MiniLM-L6-v2 on candle; 384 numbers per sentence, first 8 shown):"
printf '\n\033[1m$ %s\033[0m\n' "curl -s -X POST http://127.0.0.1:$port/v1/models/minilm:predict -d '{\"instances\": [\"The cat sits outside\", \"The cat plays in the garden\"]}'"
curl -s -X POST "http://127.0.0.1:$port/v1/models/minilm:predict" \
  -d '{"instances": ["The cat sits outside", "The cat plays in the garden"]}' | jq -c '.predictions[] | .[:8]'
echo

if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo "Press Ctrl-C to stop the server (metrics: http://127.0.0.1:$port/metrics)."
  wait $server
fi
