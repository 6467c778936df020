#!/usr/bin/env bash
# Installs what nuance needs to build and test, from Debian packages only (no npm, no downloads of prebuilt
# binaries). `install-deps.sh --list` prints the package list and installs nothing (scripts/check-deps.sh uses it).
set -euo pipefail
# build: compiler, CMake and the libraries the build links.
#   ocl-icd-opencl-dev: Debian's oneDNN is built with its OpenCL GPU runtime, so dnnl-config.cmake runs
#   find_package(OpenCL) and configure fails without the OpenCL headers and loader.
#   libopenmpi-dev + openmpi-bin: data-parallel training and sharded generation under mpirun (optional at configure
#   time; the tests run `mpirun -np 2 --oversubscribe` on loopback).
build_pkgs=(build-essential cmake pkg-config ccache
      libdnnl-dev ocl-icd-opencl-dev libpng-dev libjpeg-dev zlib1g-dev libssl-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
      libopenmpi-dev openmpi-bin)
# test: GoogleTest, the benchmarks, Fashion-MNIST for the DDPM tests, headless Chromium driven by Selenium for the
# web page's browser test, strace for scripts/check-deps.sh, clang + its sanitizer/libFuzzer runtime for fuzz/.
test_pkgs=(libgtest-dev libgmock-dev libbenchmark-dev
      dataset-fashion-mnist
      chromium chromium-driver python3 python3-selenium
      strace clang libclang-rt-14-dev)
if [ "${1:-}" = "--list" ]; then
  printf '%s\n' "${build_pkgs[@]}" "${test_pkgs[@]}"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${build_pkgs[@]}" "${test_pkgs[@]}"
