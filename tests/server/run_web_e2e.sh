#!/usr/bin/env bash
# End-to-end test of the web page (run by ctest as web_e2e): starts `nuance serve` on a free loopback port with a
# tiny random model, runs web/tests/e2e.mjs in headless Chromium, stops the server.
# Usage: run_web_e2e.sh NUANCE_BINARY WEB_TESTS_DIR. Exit 77 (ctest SKIP) when chromium, node or the npm packages
# (cd web/tests && npm ci) are missing.
set -uo pipefail
NUANCE=$1
TESTS=$2
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ] || ! command -v node >/dev/null || [ ! -d "$TESTS/node_modules/playwright-core" ]; then
  echo "SKIP: needs chromium, node and web/tests/node_modules (apt-get install chromium nodejs npm; cd web/tests && npm ci)"
  exit 77
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
"$NUANCE" serve --host 127.0.0.1 --port 0 --models-dir "$WORK/models" --threads 1 >"$WORK/server.log" 2>&1 &
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
CHROMIUM="$CHROMIUM" node "$TESTS/e2e.mjs" "$URL"
RC=$?
if [ $RC -ne 0 ]; then echo "--- server log ---"; cat "$WORK/server.log"; fi
exit $RC
