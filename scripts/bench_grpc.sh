#!/usr/bin/env bash
# gRPC benchmark (issue 21, results in benches/README.md "gRPC"): one release `weir serve` holding
# iris and the MLP, measured at 1 and 32 concurrent streams over gRPC (grpc_load), HTTP/JSON (wrk)
# and HTTP with the binary tensor extension (wrk); the same through `weir route` (HTTP and gRPC);
# and KServe's Python server over gRPC on the same iris ONNX model with the same grpc_load, all
# in one run on loopback. Every load is bounded by DURATION (default 10s); the script stops by
# itself and prints a compact table and the ratios the issue asks for.
#
# The peer lives outside the checkout: a venv in $PEER_DIR (default ~/.cache/weir/peers/kserve)
# with PyPI's kserve and onnxruntime, made on first use. KServe serves the model through a
# custom kserve.Model calling onnxruntime (written below), its gRPC server on (`enable_grpc`,
# KServe's default). KServe binds every interface ([::] and 0.0.0.0, no flag to change it);
# the load stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PEER_DIR=${PEER_DIR:-$HOME/.cache/weir/peers/kserve}

command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
source scripts/bench_lib.sh grpc # wrk, release `weir`, $work, pids, cleanup, address
cargo build --release -p weir-benches --bin grpc_load 2>&1 | tail -1
if [ ! -x "$PEER_DIR/bin/python" ] || ! "$PEER_DIR/bin/python" -c 'import kserve, onnxruntime' 2>/dev/null; then
  echo "== installing KServe's Python server into $PEER_DIR (PyPI: kserve, onnxruntime)"
  python3 -m venv "$PEER_DIR"
  "$PEER_DIR/bin/pip" install -q kserve onnxruntime numpy
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The server under test: iris (versions 1 and 2; unversioned calls get 2) and the MLP, as in
# target/test-models, with no batching, so every protocol hits the same per-request path.
mkdir -p "$work/repo"
cp -r target/test-models/iris target/test-models/mlp "$work/repo/"
grpc_port=$(free_port)
target/release/weir serve --model-repository "$work/repo" --http-port 0 --grpc-port "$grpc_port" --log warn > "$work/serve.log" 2>&1 &
pids+=($!)
http=$(address "$work/serve.log")
for _ in $(seq 1 200); do curl -sf "$http/v2/health/ready" >/dev/null && break; sleep 0.05; done
grpc="127.0.0.1:$grpc_port"

# weir route in front of the same server: one backend per model, the replica's gRPC port in
# [settings], the router's own gRPC port printed on its third line.
cat > "$work/routes.toml" <<ROUTES
[settings]
grpc_port = $grpc_port
[[route]]
model = "iris"
[[route.backend]]
version = "2"
endpoints = ["$http"]
weight = 100
[[route]]
model = "mlp"
[[route.backend]]
version = "1"
endpoints = ["$http"]
weight = 100
ROUTES
target/release/weir route --config "$work/routes.toml" --http-port 0 --admin-port 0 --grpc-port 0 --log warn > "$work/route.log" 2>&1 &
pids+=($!)
router=$(address "$work/route.log")
for _ in $(seq 1 200); do grep -q 'gRPC on' "$work/route.log" && break; sleep 0.05; done
router_grpc=$(grep -m1 -o 'gRPC on http://[0-9.:]*' "$work/route.log" | sed 's|.*http://||')
for _ in $(seq 1 200); do curl -sf -o /dev/null "$router/v2/models/iris/ready" && break; sleep 0.05; done

# The peer: KServe's ModelServer with a kserve.Model that runs the iris ONNX file on onnxruntime.
cat > "$work/kserve_iris.py" <<'PY'
import argparse

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class Iris(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        features = payload.inputs[0].as_numpy().astype(np.float32)
        label, probabilities = self.session.run(None, {"features": features})
        outputs = []
        for name, value, datatype in (("label", label, "INT64"), ("probabilities", probabilities, "FP32")):
            output = InferOutput(name=name, shape=list(value.shape), datatype=datatype)
            output.set_data_from_numpy(value, binary_data=True)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=outputs, use_binary_outputs=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([Iris("iris", args.model_path)])
PY
kserve_http=$(free_port)
kserve_grpc=$(free_port)
# --configure_logging false: KServe would otherwise log a line per gRPC call.
"$PEER_DIR/bin/python" "$work/kserve_iris.py" --model_path target/test-models/iris/2/model.onnx \
  --http_port "$kserve_http" --grpc_port "$kserve_grpc" --configure_logging false \
  --enable_latency_logging false > "$work/kserve.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$kserve_http/v2/models/iris/ready" >/dev/null && break; sleep 0.1; done

# A wrk latency ("106.00us", "2.54ms", "1.20s") in microseconds.
us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n = n; else if (v ~ /ms$/) n *= 1e3; else if (v ~ /s$/) n *= 1e6; printf "%.0f", n }'; }
declare -A rps
table="$work/table"
row() { # TARGET PROTOCOL MODEL STREAMS RPS P50 P90 P99 ERRORS
  printf '| %s | %s | %s | %s | %.0f | %s | %s | %s | %s |\n' "$@" >> "$table"
  rps["$1/$2/$3/$4"]=$5
}
wrk_row() { # TARGET PROTOCOL MODEL STREAMS LUA URL
  local out
  out=$(wrk -t1 -c"$4" -d"$DURATION" --latency -s "$5" "$6")
  echo "$out" | grep -E 'Requests/sec|Non-2xx|Socket errors|status [0-9]|^ +(50|90|99)%' | sed 's/^ */   /'
  row "$1" "$2" "$3" "$4" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(us "$(echo "$out" | awk '$1 == "50%" {print $2}')")" \
    "$(us "$(echo "$out" | awk '$1 == "90%" {print $2}')")" \
    "$(us "$(echo "$out" | awk '$1 == "99%" {print $2}')")" \
    "$(echo "$out" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}')"
}
grpc_row() { # TARGET PROTOCOL MODEL STREAMS ADDR [grpc_load options]
  local target=$1 protocol=$2 model=$3 streams=$4 addr=$5 out
  shift 5
  out=$(target/release/grpc_load --addr "$addr" --model "$model" --concurrency "$streams" --duration "$DURATION" "$@")
  echo "$out" | sed 's/^ */   /'
  row "$target" "$protocol" "$model" "$streams" "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '/latency/ {print $3}')" "$(echo "$out" | awk '/latency/ {print $6}')" \
    "$(echo "$out" | awk '/latency/ {print $9}')" "$(echo "$out" | awk '/ ok, / {print $3}')"
}
iris_args=(--input features --shape 1,4 --values 5.1,3.5,1.4,0.2)
mlp_args=(--input x --shape 1,256 --values=-0.5,-0.4,-0.3,-0.2,-0.1,0,0.1,0.2,0.3,0.4,0.5,0.6,-0.6)

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $DURATION per row"
echo "== weir serve $http (gRPC $grpc), weir route $router (gRPC $router_grpc), KServe gRPC 127.0.0.1:$kserve_grpc"
echo "   wrk: 1 thread, N connections; grpc_load: 1 thread, N streams over 1 HTTP/2 connection"
for model in iris mlp; do
  if [ $model = iris ]; then args=("${iris_args[@]}"); else args=("${mlp_args[@]}"); fi
  for streams in 1 32; do
    echo "== $model, $streams stream(s)"
    echo "-- weir serve, gRPC raw_input_contents"
    grpc_row "weir serve" "gRPC raw" $model $streams "$grpc" "${args[@]}"
    echo "-- weir serve, gRPC typed contents"
    grpc_row "weir serve" "gRPC typed" $model $streams "$grpc" "${args[@]}" --typed
    echo "-- weir serve, HTTP/JSON"
    wrk_row "weir serve" "HTTP/JSON" $model $streams "benches/load/$model.lua" "$http/v2/models/$model/infer"
    echo "-- weir serve, HTTP binary tensors"
    wrk_row "weir serve" "HTTP binary" $model $streams "benches/load/${model}_binary.lua" "$http/v2/models/$model/infer"
    echo "-- weir route, gRPC raw_input_contents"
    grpc_row "weir route" "gRPC raw" $model $streams "$router_grpc" "${args[@]}"
    echo "-- weir route, HTTP/JSON"
    wrk_row "weir route" "HTTP/JSON" $model $streams "benches/load/$model.lua" "$router/v2/models/$model/infer"
    if [ $model = iris ]; then
      echo "-- KServe (Python), gRPC raw_input_contents"
      grpc_row "KServe" "gRPC raw" $model $streams "127.0.0.1:$kserve_grpc" "${args[@]}"
    fi
  done
done

echo
echo "| target | protocol | model | streams | req/s | p50 µs | p90 µs | p99 µs | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
cat "$table"
echo
ratio() { awk -v a="${rps[$1]:-0}" -v b="${rps[$2]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for model in iris mlp; do
  for streams in 1 32; do
    echo "$model, $streams stream(s): gRPC / HTTP-JSON throughput (weir serve) $(ratio "weir serve/gRPC raw/$model/$streams" "weir serve/HTTP/JSON/$model/$streams")x," \
      "through weir route $(ratio "weir route/gRPC raw/$model/$streams" "weir route/HTTP/JSON/$model/$streams")x"
  done
done
for streams in 1 32; do
  echo "iris, $streams stream(s): weir gRPC / KServe gRPC throughput $(ratio "weir serve/gRPC raw/iris/$streams" "KServe/gRPC raw/iris/$streams")x"
done
