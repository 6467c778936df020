#!/usr/bin/env bash
# The web page's LoRA picker, ControlNet slot and mask painter against the real server routes (ctest web_e2e_real):
# makes a tiny random SD1.5 model, a tiny LoRA for it (written here: one kohya module on the text encoder), a tiny
# random ControlNet for it, starts `nuance serve` with --lora-dir / --controlnet-dir on a free loopback port and runs
# web/tests/e2e_real.py (Selenium + headless Chromium), then stops the server.
# Usage: run_web_e2e_real.sh NUANCE_BINARY SOURCE_DIR [SCREENSHOT_DIR]
# A missing chromium, chromedriver or selenium is a SKIP (exit 77) with a message naming what is missing, and a
# FAILURE when the environment variable CI is set. $PYTHON, $CHROMIUM and $CHROMEDRIVER override the tools.
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
  msg="web_e2e_real needs: ${missing[*]} (apt-get install chromium chromium-driver python3-selenium; scripts/install-deps.sh)"
  if [ -n "${CI:-}" ]; then echo "FAIL (CI is set): $msg"; exit 1; fi
  echo "SKIP: $msg"; exit 77
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nuance-web-e2e-real.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/loras" "$WORK/controlnet"
"$NUANCE" make-random --family sd15 --tiny -o "$WORK/tiny.safetensors" >/dev/null 2>&1 || { echo "make-random failed"; exit 1; }
"$NUANCE" make-random --controlnet-for "$WORK/tiny.safetensors" -o "$WORK/controlnet/tinycn.safetensors" >/dev/null 2>&1 ||
  { echo "make-random --controlnet-for failed"; exit 1; }
# A kohya LoRA for the tiny model's first text-encoder q_proj [64, 64] (rank 1, every factor 0.5).
"$PY" - "$WORK/loras/tinylora.safetensors" <<'PYEOF' || exit 1
import json, struct, sys
m = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
h = {m + ".lora_down.weight": {"dtype": "F32", "shape": [1, 64], "data_offsets": [0, 256]},
     m + ".lora_up.weight": {"dtype": "F32", "shape": [64, 1], "data_offsets": [256, 512]}}
b = json.dumps(h).encode()
b += b" " * (-len(b) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(b)) + b + struct.pack("<128f", *[0.5] * 128))
PYEOF
"$NUANCE" serve --host 127.0.0.1 --port 0 -m "$WORK/tiny.safetensors" --lora-dir "$WORK/loras" \
  --controlnet-dir "$WORK/controlnet" --max-side 1024 --threads 1 >"$WORK/server.log" 2>&1 &
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
CHROMIUM="$CHROMIUM" CHROMEDRIVER="$CHROMEDRIVER" timeout 120 "$PY" "$SRC/web/tests/e2e_real.py" "$URL" tinylora tinycn $SHOTS
RC=$?
if [ $RC -ne 0 ]; then echo "--- server log ---"; cat "$WORK/server.log"; fi
exit $RC
