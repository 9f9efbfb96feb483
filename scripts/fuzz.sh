#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target in fuzz/ for a bounded time, one after another, and
# prints how many inputs each one ran and whether it crashed (see fuzz/README.md).
#
#   FUZZ_SECONDS=60      time per target (libFuzzer's -max_total_time)
#   FUZZ_TARGETS="a b"   only these targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER=none  cargo fuzz --sanitizer (none | address | ...); see fuzz/README.md
#
# Not part of `make test`: it is long, needs a coverage-instrumented build of the whole dependency
# tree in fuzz/target, and its outcome depends on the time given.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none}
# cargo fuzz passes -Z flags; the project's stable toolchain accepts them with RUSTC_BOOTSTRAP, so
# no nightly toolchain has to be installed.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

cd fuzz
targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
# Release with debug assertions and overflow checks: arithmetic overflow is a crash here, as in
# the tests.
flags=(--sanitizer "$FUZZ_SANITIZER" --release --debug-assertions)
echo "== building the fuzz targets (sanitizer: $FUZZ_SANITIZER)"
cargo fuzz build "${flags[@]}"

failed=()
summary=()
for target in $targets; do
  # New inputs go to the working corpus under target/ (not checked in); the seeds in corpus/
  # and any saved crash in regressions/ are read only.
  work=target/corpus/$target
  mkdir -p "$work" "artifacts/$target"
  dirs=("$work" "corpus/$target")
  [ -d "regressions/$target" ] && dirs+=("regressions/$target")
  log=target/fuzz-$target.log
  echo "== $target: ${FUZZ_SECONDS}s"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "${dirs[@]}" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ "$status" -eq 0 ]; then
    line="$target: ${runs:-?} executions, no crash"
  else
    failed+=("$target")
    line="$target: CRASH after ${runs:-?} executions (exit $status; log fuzz/$log)"
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -5 | sed 's/^/    /' || true
  fi
  echo "$line"
  summary+=("$line")
done

echo "== summary (${FUZZ_SECONDS}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]}; minimize with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin ${flags[*]} TARGET artifacts/TARGET/crash-..."
  exit 1
fi
