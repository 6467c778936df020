#!/usr/bin/env bash
# ctest emoji_data_from_raw: scripts/install-emoji-data.sh --from takes the extracted npm members from a folder (no
# npm), checks each against its sha256, and builds the data set (7,562 images); a changed member is refused.
# Needs the shared/data/emoji-raw folder beside the checkout (as CI has it); skips (77) without it.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
NUANCE="$1"
RAW="${NUANCE_EMOJI_RAW:-$ROOT/../shared/data/emoji-raw}"
[ -d "$RAW/emoji-datasource" ] || { echo "SKIP: no $RAW"; exit 77; }
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
NUANCE_BIN="$NUANCE" "$ROOT/scripts/install-emoji-data.sh" --from "$RAW" "$W/emoji" > "$W/log" 2>&1 || {
  cat "$W/log"; echo "FAIL: install-emoji-data.sh --from failed"; exit 1; }
n=$(wc -l < "$W/emoji/manifest.jsonl")
[ "$n" = 7562 ] || { echo "FAIL: expected 7562 images, got $n"; exit 1; }
[ -f "$W/emoji/LICENSES/MIT-emojibase.txt" ] || { echo "FAIL: licences not installed"; exit 1; }
cp -r "$RAW" "$W/bad"; chmod -R u+w "$W/bad"; echo x >> "$W/bad/emojibase-data/package/LICENSE"
if NUANCE_BIN="$NUANCE" "$ROOT/scripts/install-emoji-data.sh" --from "$W/bad" "$W/emoji2" > "$W/log2" 2>&1; then
  echo "FAIL: a changed member was accepted"; exit 1; fi
grep -q "do not match their pinned sha256" "$W/log2" || { cat "$W/log2"; echo "FAIL: wrong message"; exit 1; }
if "$ROOT/scripts/install-emoji-data.sh" --from "$W/nowhere" "$W/emoji3" > "$W/log3" 2>&1; then
  echo "FAIL: a missing folder was accepted"; exit 1; fi
grep -q "no such folder" "$W/log3" || { cat "$W/log3"; echo "FAIL: wrong message"; exit 1; }
echo "emoji data from $RAW: $n images, checksums enforced"
