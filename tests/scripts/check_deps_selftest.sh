#!/usr/bin/env bash
# ctest check_deps_selftest: scripts/check_deps.py must fail when install-deps.sh leaves out a package the build
# reads (the OpenCL headers and loader that Debian's oneDNN CMake config needs: the hole a green CI once hid), and
# pass when the list has it. Uses this machine's dpkg database, where install-deps.sh installed both.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY=$(command -v /usr/bin/python3 || command -v python3)
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
if ! dpkg -S /usr/include/CL/cl.h >/dev/null 2>&1; then echo "SKIP: opencl-c-headers is not installed"; exit 77; fi
# A configure trace in strace's format: cmake reading the OpenCL header and loader, plus a file inside the repo.
cat > "$W/trace" <<T
100  execve("/usr/bin/cmake", ["cmake", "-S", "."], 0x7ffd /* 40 vars */) = 0
100  openat(AT_FDCWD, "/usr/include/CL/cl.h", O_RDONLY|O_NOCTTY) = 3
101  openat(AT_FDCWD, "/usr/lib/x86_64-linux-gnu/libOpenCL.so", O_RDONLY|O_CLOEXEC) = 3
101  openat(AT_FDCWD, "$ROOT/CMakeLists.txt", O_RDONLY) = 3
T
"$ROOT/scripts/install-deps.sh" --list > "$W/full"
grep -vx 'ocl-icd-opencl-dev' "$W/full" > "$W/without"
fail=0
out=$("$PY" "$ROOT/scripts/check_deps.py" --packages "$W/without" --repo "$ROOT" "$W/trace"); rc=$?
echo "$out"
if [ $rc -ne 1 ] || ! grep -q 'opencl-c-headers: /usr/include/CL/cl.h' <<<"$out"; then
  echo "FAIL: without ocl-icd-opencl-dev the check must fail naming opencl-c-headers"; fail=1; fi
out=$("$PY" "$ROOT/scripts/check_deps.py" --packages "$W/full" --repo "$ROOT" "$W/trace"); rc=$?
echo "$out"
if [ $rc -ne 0 ] || ! grep -q 'check-deps: OK' <<<"$out"; then
  echo "FAIL: with install-deps.sh's full list the check must pass"; fail=1; fi
# An unowned file outside machine state (a hand-installed library) fails too.
mkdir -p "$W/opt/lib"; : > "$W/opt/lib/libhand.so"
echo "102  openat(AT_FDCWD, \"$W/opt/lib/libhand.so\", O_RDONLY) = 3" > "$W/trace2"
out=$("$PY" "$ROOT/scripts/check_deps.py" --machine-state /etc/ --packages "$W/full" --repo "$ROOT" "$W/trace2"); rc=$?
echo "$out"
if [ $rc -ne 1 ] || ! grep -q 'no Debian package owns' <<<"$out"; then
  echo "FAIL: an unowned file must fail the check"; fail=1; fi
exit $fail
