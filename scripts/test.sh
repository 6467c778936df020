#!/usr/bin/env bash
# The test suite: builds, then runs every GoogleTest case through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
