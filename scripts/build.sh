#!/usr/bin/env bash
# Configures and builds nuance (Release) into ./build (or $NUANCE_BUILD_DIR).
# ccache is used when it is installed. With NUANCE_TRACE_DEPS=FILE, configure and build run under strace and every
# file they open is logged to FILE, for scripts/check-deps.sh (which proves install-deps.sh installs all of them).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${NUANCE_BUILD_DIR:-build}"
args=(-DCMAKE_BUILD_TYPE=Release)
if command -v ccache >/dev/null 2>&1; then
  args+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
traced() {  # traced LOG COMMAND...: runs COMMAND, under strace when NUANCE_TRACE_DEPS is set
  local log=$1; shift
  if [ -z "${NUANCE_TRACE_DEPS:-}" ]; then "$@"; return; fi
  # --seccomp-bpf stops the traced processes only at the traced calls (not at every system call): the traced build
  # costs ~10% more than an untraced one instead of ~40%.
  strace -f -qq --seccomp-bpf -e trace=open,openat,openat2,execve,access -e status=successful -o "$log" "$@"
}
if [ -n "${NUANCE_TRACE_DEPS:-}" ]; then
  # Never serve compiles from the cache while tracing (a cache hit reads no header); refresh the cache instead.
  export CCACHE_RECACHE=1
  mkdir -p "$(dirname "$NUANCE_TRACE_DEPS")"
fi
traced "${NUANCE_TRACE_DEPS:-}" cmake -S . -B "$dir" "${args[@]}" "$@"
traced "${NUANCE_TRACE_DEPS:-}.build" cmake --build "$dir" -j"$(nproc)"
