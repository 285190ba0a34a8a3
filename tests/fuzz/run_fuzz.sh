#!/usr/bin/env bash
# The fuzz_decode ctest: runs the libFuzzer binary over the seed corpus for a fixed time and
# fails on the first input that crashes, leaks, hits UB, hangs or breaks the decoder's contract.
#   run_fuzz.sh FUZZER SEED_DIR WORK_DIR
# How long: $TRELLIS_FUZZ_SECONDS, else 60 s under CI (CI=true), else 5 s (a smoke run).
# Inputs the fuzzer finds go to WORK_DIR/corpus (kept between runs, never the source tree); an
# input that fails goes to WORK_DIR/artifacts/, named in the output; replay it with
#   FUZZER WORK_DIR/artifacts/crash-...
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3

if [ -n "${TRELLIS_FUZZ_SECONDS:-}" ]; then
  seconds=$TRELLIS_FUZZ_SECONDS
elif [ "${CI:-}" = true ]; then
  seconds=60
else
  seconds=5
fi

# Symbolized stacks in a report need llvm-symbolizer (Debian's `llvm` package puts it on PATH).
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null; then
  for s in /usr/lib/llvm-*/bin/llvm-symbolizer; do
    [ -x "$s" ] && export ASAN_SYMBOLIZER_PATH=$s
  done
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

mkdir -p "$work/corpus" "$work/artifacts"
echo "fuzz_decode: ${seconds}s from $seeds (found inputs: $work/corpus)"
# -max_len: frames up to 4 KiB, past every seed, so length-driven paths get explored too.
exec "$fuzzer" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds"
