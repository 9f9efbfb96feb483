#!/usr/bin/env bash
# gRPC benchmark (issue 21, results in benches/README.md "gRPC"): one release `weir serve` holding
# iris and the MLP, measured at 1 and 32 concurrent calls over gRPC, HTTP/JSON and HTTP with the
# binary tensor extension; the same through `weir route` (HTTP and gRPC); and KServe's Python
# server over gRPC on the same iris ONNX model; and the floor of each (the cheapest call: gRPC
# ServerLive, HTTP GET /v2/health/live), all in one run on loopback with ONE load tool,
# h2load (Debian's nghttp2-client): HTTP/1.1 with `--h1`, gRPC as HTTP/2 with prior knowledge
# (a POST of a length-prefixed message with `content-type: application/grpc`). Every load is
# bounded by DURATION (default 10s); the script stops by itself and prints a table and the
# ratios the issue asks for.
#
# The machine's speed drifts by as much as a third within minutes, so each group of rows (one
# model, one number of concurrent calls) is run ROUNDS times (default 3) in turn, and the table
# gives each row's median rate and mean latency over its rounds (the largest max latency, the
# errors of all rounds): a row is compared with the others of its round, not with a slower or
# faster minute.
#
# h2load counts HTTP statuses, and a gRPC error is HTTP 200 with a status in its trailers, so
# each gRPC target is first called once with grpcio (benches/load/grpc_bodies.py check: fails
# unless OK) and every gRPC row then checks that the answer data h2load received is at least
# one such answer per call it counted: an error answer carries no message.
#
# BENCH_GROUPS picks the groups to run (default all: "floor/1 floor/32 iris/1 iris/32 mlp/1
# mlp/32"), so one comparison can be given more rounds, e.g.
# `BENCH_GROUPS=iris/32 ROUNDS=8 DURATION=5 scripts/bench_grpc.sh`.
#
# The peer lives outside the checkout: a venv in $PEER_DIR (default ~/.cache/weir/peers/kserve)
# with PyPI's kserve and onnxruntime, made on first use. KServe serves the model through a
# custom kserve.Model calling onnxruntime (written below), its gRPC server on (`enable_grpc`,
# KServe's default). KServe binds every interface ([::] and 0.0.0.0, no flag to change it);
# the load stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
DURATION=${DURATION%s}
ROUNDS=${ROUNDS:-3}
BENCH_GROUPS=${BENCH_GROUPS:-floor/1 floor/32 iris/1 iris/32 mlp/1 mlp/32}
wanted() { [[ " $BENCH_GROUPS " == *" $1 "* ]]; }
PEER_DIR=${PEER_DIR:-$HOME/.cache/weir/peers/kserve}

command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
[ -x .venv/bin/python ] || scripts/setup.sh
source scripts/bench_lib.sh grpc # release `weir`, $work, pids, cleanup, address
if [ ! -x "$PEER_DIR/bin/python" ] || ! "$PEER_DIR/bin/python" -c 'import kserve, onnxruntime' 2>/dev/null; then
  echo "== installing KServe's Python server into $PEER_DIR (PyPI: kserve, onnxruntime)"
  python3 -m venv "$PEER_DIR"
  "$PEER_DIR/bin/pip" install -q kserve onnxruntime numpy
fi
.venv/bin/python benches/load/grpc_bodies.py write "$work/bodies"
# The server under test: iris (versions 1 and 2; unversioned calls get 2) and the MLP, as in
# target/test-models, with no batching, so every protocol hits the same per-request path; and
# weir route in front of it, one backend per model, the replica's gRPC port in [settings].
start_serve_and_route iris:2 mlp:1

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
# Its first start in a new venv compiles every module it imports: give it two minutes.
for _ in $(seq 1 1200); do curl -sf "http://127.0.0.1:$kserve_http/v2/models/iris/ready" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$kserve_http/v2/models/iris/ready" >/dev/null || { echo "KServe did not get ready in 2 minutes; its log:" >&2; cat "$work/kserve.log" >&2; exit 1; }

declare -A rps answer_size
samples="$work/samples"
# One h2load run: TARGET PROTOCOL MODEL CALLS then h2load's arguments. One sample of a row of the
# table: req/s, mean and max latency, errors (failed or non-2xx calls; for gRPC also calls whose
# answer carried no message).
row() {
  local target=$1 protocol=$2 model=$3 calls=$4 out
  shift 4
  out=$(h2load -D "$DURATION" "$@")
  local rate mean max succeeded errors
  rate=$(echo "$out" | awk '/^finished in/ {print $4}')
  read -r mean max < <(echo "$out" | awk '/^time for request:/ {print $6, $5}')
  succeeded=$(echo "$out" | awk '/^requests:/ {print $8}')
  if [[ $protocol == gRPC* ]]; then
    errors=$(h2load_failures "$out" "${answer_size["$target/$model"]}")
  else
    errors=$(h2load_failures "$out")
  fi
  echo "   $target, $protocol, $model, $calls: $rate req/s, mean $mean, max $max, $succeeded answered, $errors errors"
  printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$target" "$protocol" "$model" "$calls" "$rate" \
    "$(us "$mean")" "$(us "$max")" "$errors" >> "$samples"
}
# An h2load latency ("106us", "2.54ms", "1.20s") in microseconds.
us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n = n; else if (v ~ /ms$/) n *= 1e3; else if (v ~ /s$/) n *= 1e6; printf "%.0f", n }'; }
grpc_args() { # ADDRESS MODEL [METHOD]
  echo "-d $work/bodies/$2.grpc -H content-type:application/grpc -H te:trailers http://$1/inference.GRPCInferenceService/${3:-ModelInfer}"
}
json_args() { # BASE MODEL
  echo "--h1 -d $work/bodies/$2.json -H content-type:application/json $1/v2/models/$2/infer"
}
binary_args() { # BASE MODEL
  echo "--h1 -d $work/bodies/$2.bin -H content-type:application/octet-stream -H inference-header-content-length:$(cat "$work/bodies/$2.bin.len") $1/v2/models/$2/infer"
}
for model in iris mlp; do
  answer_size["weir serve/$model"]=$(.venv/bin/python benches/load/grpc_bodies.py check "$serve_grpc" "$work/bodies/$model.grpc")
  answer_size["weir route/$model"]=$(.venv/bin/python benches/load/grpc_bodies.py check "$route_grpc" "$work/bodies/$model.grpc")
done
answer_size["KServe/iris"]=$(.venv/bin/python benches/load/grpc_bodies.py check "127.0.0.1:$kserve_grpc" "$work/bodies/iris.grpc")
answer_size["weir serve/live"]=$(.venv/bin/python benches/load/grpc_bodies.py check "$serve_grpc" "$work/bodies/live.grpc" ServerLive)
answer_size["KServe/live"]=$(.venv/bin/python benches/load/grpc_bodies.py check "127.0.0.1:$kserve_grpc" "$work/bodies/live.grpc" ServerLive)

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $DURATION per row"
echo "== weir serve $serve_http (gRPC $serve_grpc), weir route $route_http (gRPC $route_grpc), KServe gRPC 127.0.0.1:$kserve_grpc"
echo "   h2load, one thread: N concurrent calls = N HTTP/1.1 connections, or N gRPC streams on one HTTP/2 connection (a gRPC channel)"
# The floor: the cheapest call each protocol has (gRPC ServerLive, HTTP GET /v2/health/live) on
# the same server and tool, and KServe's ServerLive. No inference call can be answered faster
# than these, so weir's ServerLive over KServe's ModelInfer bounds the gRPC/KServe ratio any
# work on weir's inference path could reach on this machine.
for calls in 1 32; do
  wanted "floor/$calls" || continue
  for round in $(seq 1 "$ROUNDS"); do
    echo "== the floor, $calls concurrent call(s), ${DURATION}s each, round $round of $ROUNDS"
    # shellcheck disable=SC2046 # the argument lists are meant to split
    row "weir serve" "gRPC ServerLive" live $calls -c1 -m$calls $(grpc_args "$serve_grpc" live ServerLive)
    row "weir serve" "HTTP GET live" live $calls --h1 -c$calls "$serve_http/v2/health/live"
    # shellcheck disable=SC2046
    row "KServe" "gRPC ServerLive" live $calls -c1 -m$calls $(grpc_args "127.0.0.1:$kserve_grpc" live ServerLive)
  done
done
for model in iris mlp; do
  for calls in 1 32; do
    wanted "$model/$calls" || continue
    for round in $(seq 1 "$ROUNDS"); do
      echo "== $model, $calls concurrent call(s), ${DURATION}s each, round $round of $ROUNDS"
      # shellcheck disable=SC2046 # the argument lists are meant to split
      row "weir serve" "gRPC" $model $calls -c1 -m$calls $(grpc_args "$serve_grpc" $model)
      if [ $calls -gt 1 ]; then
        row "weir serve" "gRPC, $calls connections" $model $calls -c$calls -m1 $(grpc_args "$serve_grpc" $model)
      fi
      row "weir serve" "HTTP/JSON" $model $calls -c$calls $(json_args "$serve_http" $model)
      row "weir serve" "HTTP binary" $model $calls -c$calls $(binary_args "$serve_http" $model)
      row "weir route" "gRPC" $model $calls -c1 -m$calls $(grpc_args "$route_grpc" $model)
      if [ $calls -gt 1 ]; then
        row "weir route" "gRPC, $calls connections" $model $calls -c$calls -m1 $(grpc_args "$route_grpc" $model)
      fi
      row "weir route" "HTTP/JSON" $model $calls -c$calls $(json_args "$route_http" $model)
      if [ $model = iris ]; then
        row "KServe" "gRPC" $model $calls -c1 -m$calls $(grpc_args "127.0.0.1:$kserve_grpc" $model)
      fi
    done
  done
done

# Each row once, in the order first run: median rate and mean latency, largest max, all errors.
table=$(awk -F'|' '
  !($1 FS $2 FS $3 FS $4 in seen) { seen[$1 FS $2 FS $3 FS $4] = 1; order[++rows] = $1 FS $2 FS $3 FS $4 }
  { key = $1 FS $2 FS $3 FS $4; n[key]++; rate[key, n[key]] = $5; mean[key, n[key]] = $6
    if ($7 > max[key]) max[key] = $7; errors[key] += $8 }
  function median(values, key, count,   i, j, t, sorted) {
    for (i = 1; i <= count; i++) sorted[i] = values[key, i]
    for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++) if (sorted[j] < sorted[i]) { t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t }
    return count % 2 ? sorted[(count + 1) / 2] : (sorted[count / 2] + sorted[count / 2 + 1]) / 2
  }
  END { for (r = 1; r <= rows; r++) { key = order[r]; split(key, f, FS)
    printf "%s|%s|%s|%s|%.0f|%.0f|%s|%s\n", f[1], f[2], f[3], f[4], median(rate, key, n[key]), median(mean, key, n[key]), max[key], errors[key] } }
' "$samples")
while IFS='|' read -r target protocol model calls rate _; do
  rps["$target/$protocol/$model/$calls"]=$rate
done <<< "$table"

echo
echo "| target | protocol | model | concurrent calls | req/s | mean µs | max µs | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
echo "$table" | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
echo
ratio() { awk -v a="${rps[$1]:-0}" -v b="${rps[$2]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
for model in iris mlp; do
  for calls in 1 32; do
    echo "$model, $calls concurrent call(s): gRPC / HTTP-JSON throughput (weir serve) $(ratio "weir serve/gRPC/$model/$calls" "weir serve/HTTP/JSON/$model/$calls")x," \
      "through weir route $(ratio "weir route/gRPC/$model/$calls" "weir route/HTTP/JSON/$model/$calls")x"
  done
done
for calls in 1 32; do
  echo "iris, $calls concurrent call(s): weir gRPC / KServe gRPC throughput $(ratio "weir serve/gRPC/iris/$calls" "KServe/gRPC/iris/$calls")x;" \
    "the bound (weir's gRPC ServerLive / KServe's ModelInfer) $(ratio "weir serve/gRPC ServerLive/live/$calls" "KServe/gRPC/iris/$calls")x;" \
    "weir's infer over its own floor: gRPC $(ratio "weir serve/gRPC/iris/$calls" "weir serve/gRPC ServerLive/live/$calls")," \
    "HTTP/JSON $(ratio "weir serve/HTTP/JSON/iris/$calls" "weir serve/HTTP GET live/live/$calls")"
done
