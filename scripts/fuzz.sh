#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan) into ./build-fuzz (or $NUANCE_FUZZ_BUILD_DIR) and runs
# each for SECONDS seconds (default 60), JOBS at a time (default 2), starting from its corpus fuzz/corpus/<target>/.
# New inputs go to build-fuzz/corpus/<target>/ (the repo's corpus is not modified); a crash, sanitizer report, leak,
# timeout (-timeout, default 10 s per input) or out-of-memory (-rss_limit_mb/-malloc_limit_mb 2048) is saved under
# build-fuzz/artifacts/<target>/ and fails the script. Without clang it prints why and exits 0 (CI skips).
#
#   scripts/fuzz.sh [--ci] [SECONDS] [TARGET...]  (--ci: 30 s per target) e.g. scripts/fuzz.sh 60; scripts/fuzz.sh 600 fuzz_ckpt
#   FUZZ_RUNS=N   run each target for N executions instead of SECONDS (SECONDS still caps the time)
#   FUZZ_BUILD_ONLY=1  build and stop
set -euo pipefail
cd "$(dirname "$0")/.."
ci_default=60
if [ "${1:-}" = "--ci" ]; then shift; ci_default=30; fi  # what .ci/run passes: 30 s per target (keeps CI under ~30 min)
seconds="${1:-$ci_default}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_safetensors fuzz_gguf fuzz_ckpt fuzz_pickle fuzz_zip fuzz_png fuzz_jpeg fuzz_prompt
                                      fuzz_request fuzz_diffusers_json fuzz_lora)
jobs="${JOBS:-2}"
dir="${NUANCE_FUZZ_BUILD_DIR:-build-fuzz}"

cc="" cxx=""
for v in "" -14; do
  if command -v "clang$v" >/dev/null 2>&1 && command -v "clang++$v" >/dev/null 2>&1; then cc="clang$v"; cxx="clang++$v"; break; fi
done
if [ -z "$cxx" ]; then
  echo "fuzz.sh: clang is not installed (scripts/install-deps.sh installs clang and libclang-rt-dev): skipping the fuzz run"
  exit 0
fi

args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DNUANCE_FUZZ=ON
      -DNUANCE_BUILD_TESTS=OFF -DNUANCE_BUILD_BENCH=OFF)
if command -v ccache >/dev/null 2>&1; then
  args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
start=$SECONDS
cmake -S . -B "$dir" "${args[@]}" >/dev/null
cmake --build "$dir" --target "${targets[@]}" -j"$(nproc)"
echo "fuzz.sh: built ${#targets[@]} targets in $((SECONDS - start)) s"
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

# Per-target libFuzzer options: input size caps keep executions fast; dictionaries where fuzz/dict/<target>.dict exists.
opts_for() {
  local t="$1" o=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1)
  case "$t" in
    fuzz_prompt) o+=(-max_len=512) ;;  # > 75 tokens already; longer inputs only cost more per execution
    fuzz_request | fuzz_diffusers_json) o+=(-max_len=8192) ;;
    *) o+=(-max_len=65536) ;;
  esac
  [ -f "fuzz/dict/${t#fuzz_}.dict" ] && o+=(-dict="fuzz/dict/${t#fuzz_}.dict")
  echo "${o[@]}"
}

run_one() {
  local t="$1" log="$dir/logs/$1.log"
  mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t" "fuzz/corpus/${t#fuzz_}"
  local limit=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limit+=(-runs="$FUZZ_RUNS")
  # shellcheck disable=SC2046
  if "$dir/$t" $(opts_for "$t") "${limit[@]}" -artifact_prefix="$dir/artifacts/$t/" \
       "$dir/corpus/$t" "fuzz/corpus/${t#fuzz_}" >"$log" 2>&1; then
    echo "fuzz.sh: $t: ok ($(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') executions," \
         "$(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+'))"
  else
    echo "fuzz.sh: $t: FAILED, see $log and $dir/artifacts/$t/:"
    grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|Test unit written|exception' "$log" | head -20
    return 1
  fi
}

mkdir -p "$dir/logs"
fail=0
running=0
pids=()
for t in "${targets[@]}"; do
  run_one "$t" &
  pids+=($!)
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || fail=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || fail=1
  running=$((running - 1))
done
echo "fuzz.sh: total $((SECONDS - start)) s"
if [ "$fail" -ne 0 ]; then
  echo "fuzz.sh: FAILED: a target found a problem (reproduce: $dir/<target> <artifact>)"
  exit 1
fi
echo "fuzz.sh: all targets ran without findings"
