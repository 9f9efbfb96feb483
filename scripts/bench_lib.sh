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
