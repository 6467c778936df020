#!/usr/bin/env bash
# Proves that a clean Debian machine builds nuance with what scripts/install-deps.sh installs: configures and builds
# into a fresh folder under strace (scripts/build.sh, NUANCE_TRACE_DEPS), then maps every file outside the repository
# that configure and build opened or executed to its Debian package and fails unless install-deps.sh installs that
# package or something that depends on it (scripts/check_deps.py).
#   scripts/check-deps.sh [BUILD_DIR]        default: build-deps (removed first)
#   scripts/check-deps.sh --traces T1 T2     only check existing strace logs
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY=$(command -v /usr/bin/python3 || command -v python3)
LIST=$(mktemp); trap 'rm -f "$LIST"' EXIT
./scripts/install-deps.sh --list > "$LIST"
if [ "${1:-}" = "--traces" ]; then
  shift
  exec "$PY" scripts/check_deps.py --packages "$LIST" --repo "$ROOT" "$@"
fi
dir="${1:-build-deps}"
rm -rf "$dir"
NUANCE_BUILD_DIR="$dir" NUANCE_TRACE_DEPS="$dir/trace/deps.strace" ./scripts/build.sh >"$dir.log" 2>&1 || {
  echo "check-deps: the traced build failed (log: $dir.log):"; tail -30 "$dir.log"; exit 1; }
"$PY" scripts/check_deps.py --packages "$LIST" --repo "$ROOT" "$dir/trace/deps.strace" "$dir/trace/deps.strace.build"
