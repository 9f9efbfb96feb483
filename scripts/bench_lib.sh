# Sourced by the benchmark scripts that start weir processes: wrk and a release build, a work
# folder under /tmp removed on exit together with every process whose pid is added to `pids`,
# and `address LOG`, the first http:// address a process announced in its log.
# Usage: source scripts/bench_lib.sh NAME   (a script may define before_cleanup for extras)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin weir 2>&1 | tail -1

work=$(mktemp -d "/tmp/weir-bench-$1.XXXXXX")
pids=()
cleanup() {
  if declare -F before_cleanup >/dev/null; then before_cleanup; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
address() {
  for _ in $(seq 1 200); do grep -m1 -o 'http://[0-9.:]*' "$1" 2>/dev/null && return; sleep 0.05; done
  echo "no address in $1" >&2
  exit 1
}
# Two `weir serve` replicas, each holding one version of iris, ready; sets v1 and v2 (their
# addresses) and serve_pids.
start_iris_replicas() {
  for version in 1 2; do
    mkdir -p "$work/repo-v$version/iris/$version"
    cp "target/test-models/iris/$version/model.onnx" "$work/repo-v$version/iris/$version/"
    target/release/weir serve --model-repository "$work/repo-v$version" --http-port 0 --log warn > "$work/serve-$version.log" 2>&1 &
    pids+=($!)
    serve_pids+=($!)
  done
  v1=$(address "$work/serve-1.log"); v2=$(address "$work/serve-2.log")
  for url in "$v1" "$v2"; do
    for _ in $(seq 1 200); do curl -sf "$url/v2/health/ready" >/dev/null && break; sleep 0.05; done
  done
}
# The routes file splitting iris 90/10 between the replicas of start_iris_replicas.
write_iris_routes() {
  cat > "$1" <<ROUTES
[[route]]
model = "iris"
[[route.backend]]
version = "1"
endpoints = ["$v1"]
weight = 90
[[route.backend]]
version = "2"
endpoints = ["$v2"]
weight = 10
ROUTES
}
# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# One `weir serve` with a gRPC port holding MODEL:VERSION… (from target/test-models), and one
# `weir route` (HTTP and a gRPC port, ROUTE_ARGS extra) with one backend per model at that
# version, both ready; sets serve_pid, serve_http, serve_grpc (HOST:PORT), route_pid,
# route_http and route_grpc.
start_serve_and_route() {
  mkdir -p "$work/repo"
  local entry port
  for entry in "$@"; do cp -r "target/test-models/${entry%%:*}" "$work/repo/"; done
  port=$(free_port)
  target/release/weir serve --model-repository "$work/repo" --http-port 0 --grpc-port "$port" --log warn > "$work/serve.log" 2>&1 &
  serve_pid=$!
  pids+=("$serve_pid")
  serve_http=$(address "$work/serve.log")
  serve_grpc="127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf "$serve_http/v2/health/ready" >/dev/null && break; sleep 0.05; done
  printf '[settings]\ngrpc_port = %s\n' "$port" > "$work/routes.toml"
  for entry in "$@"; do
    printf '[[route]]\nmodel = "%s"\n[[route.backend]]\nversion = "%s"\nendpoints = ["%s"]\nweight = 100\n' \
      "${entry%%:*}" "${entry##*:}" "$serve_http" >> "$work/routes.toml"
  done
  port=$(free_port)
  # shellcheck disable=SC2086 # ROUTE_ARGS is a list of arguments
  target/release/weir route --config "$work/routes.toml" --http-port 0 --admin-port 0 --grpc-port "$port" ${ROUTE_ARGS:-} --log warn > "$work/route.log" 2>&1 &
  route_pid=$!
  pids+=("$route_pid")
  route_http=$(address "$work/route.log")
  route_grpc="127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$route_http/v2/models/${1%%:*}/ready" && break; sleep 0.05; done
}
# The failed calls in h2load's output $1: its "failed" (errors, timeouts and 4xx/5xx answers
# alike) and 3xx answers, which it counts as succeeded; with $2, the size of one framed gRPC
# answer, also the calls it counted whose answer carried no message (a gRPC error is HTTP 200
# with its status in the trailers and no data).
h2load_failures() { # OUTPUT [ANSWER_SIZE]
  local failures succeeded data answered
  failures=$(echo "$1" | awk '/^requests:/ {n += $10} /^status codes:/ {n += $5} END {print n + 0}')
  if [ -n "${2:-}" ]; then
    succeeded=$(echo "$1" | awk '/^requests:/ {print $8}')
    data=$(echo "$1" | awk '/^traffic:/ {gsub(/[()]/, "", $(NF-1)); print $(NF-1)}')
    answered=$((data / $2))
    if [ "$answered" -lt "$succeeded" ]; then failures=$((failures + succeeded - answered)); fi
  fi
  echo "$failures"
}
# The resident memory, in KiB, of each NAME=PID given: now (rss) or at its peak (hwm).
memory() { # rss|hwm NAME=PID...
  local field=VmRSS pair out=""
  if [ "$1" = hwm ]; then field=VmHWM; fi
  shift
  for pair in "$@"; do
    out+="${pair%%=*} $(awk -v field="$field:" '$1 == field {print $2}' "/proc/${pair#*=}/status") "
  done
  echo "${out% }"
}
# In the background for SECONDS, the resident memory of each NAME=PID every $SAMPLE seconds
# (times from the script's start); sets sampler, its pid.
sample_memory() { # SECONDS NAME=PID...
  local seconds=$1
  shift
  (
    end=$((SECONDS + seconds))
    while [ $SECONDS -lt "$end" ]; do
      sleep "$SAMPLE"
      echo "rss at +${SECONDS}s (KiB): $(memory rss "$@")"
    done
  ) &
  sampler=$!
}
