#!/usr/bin/env bash
# End-to-end test of the web page (run by ctest as web_e2e): starts `nuance serve` on a free loopback port with the
# built-in nuance-emoji model, a tiny random SD1.5 model and an output folder, runs web/tests/e2e.py (Selenium +
# headless Chromium, Debian's python3-selenium and chromium-driver: no npm), stops the server.
# Usage: run_web_e2e.sh NUANCE_BINARY SOURCE_DIR [SCREENSHOT_DIR]
# A missing chromium, chromedriver or selenium is a SKIP (exit 77) on a developer machine, and a FAILURE when the
# environment variable CI is set (CI must run this test). $PYTHON (default /usr/bin/python3, Debian's Python with
# selenium), $CHROMIUM and $CHROMEDRIVER override the tools.
set -uo pipefail
NUANCE=$1
SRC=$2
SHOTS=${3:-}
PY=${PYTHON:-/usr/bin/python3}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver || true)}
missing=()
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] || missing+=("chromium")
[ -n "$CHROMEDRIVER" ] && [ -x "$CHROMEDRIVER" ] || missing+=("chromedriver (chromium-driver)")
if [ ! -x "$PY" ] || ! "$PY" -c 'import selenium' 2>/dev/null; then missing+=("selenium for $PY (python3-selenium)"); fi
if [ ${#missing[@]} -gt 0 ]; then
  msg="web_e2e needs: ${missing[*]} (apt-get install chromium chromium-driver python3-selenium; scripts/install-deps.sh)"
  if [ -n "${CI:-}" ]; then echo "FAIL (CI is set): $msg"; exit 1; fi
  echo "SKIP: $msg"; exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nuance-web-e2e.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/models"
"$NUANCE" make-random --family sd15 --tiny -o "$WORK/models/tiny.safetensors" >/dev/null || exit 1
"$NUANCE" serve --host 127.0.0.1 --port 0 -m "$SRC/models/nuance-emoji" --models-dir "$WORK/models" \
  --output-dir "$WORK/outputs" --max-side 1024 --max-pixels 262144 --threads 1 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 1 100); do
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/server.log" | head -1)
  [ -n "$URL" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "the server did not start:"; cat "$WORK/server.log"; exit 1
fi
echo "server at $URL"
CHROMIUM="$CHROMIUM" CHROMEDRIVER="$CHROMEDRIVER" timeout 280 "$PY" "$SRC/web/tests/e2e.py" "$URL" $SHOTS
RC=$?
if [ $RC -ne 0 ]; then echo "--- server log ---"; cat "$WORK/server.log"; fi
exit $RC
