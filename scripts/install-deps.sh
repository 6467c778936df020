#!/usr/bin/env bash
# Installs what nuance needs to build and test, from Debian packages only.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential cmake pkg-config
      libdnnl-dev libpng-dev libjpeg-dev zlib1g-dev libssl-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      dataset-fashion-mnist
      chromium)
# Node.js for the browser test: Debian's, unless the machine already has one (a NodeSource nodejs bundles npm and
# conflicts with Debian's npm package).
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
# The web page's end-to-end test (ctest web_e2e) drives headless Chromium with Playwright (web/tests).
# Without it the test skips itself (exit 77), so a registry hiccup does not stop the build.
(cd "$(dirname "$0")/../web/tests" && npm ci --no-audit --no-fund) || echo "install-deps: npm ci failed; web_e2e will be skipped" >&2
