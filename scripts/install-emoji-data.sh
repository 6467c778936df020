#!/usr/bin/env bash
# Installs the emoji training set (shared/reference/data.md §1): Noto (Google, Apache-2.0) and Twemoji (Twitter,
# CC-BY-4.0) 32-px images cut from emoji-datasource 16.0.0's sprite sheets, captioned from emojibase-data 17.0.0
# (MIT), plus the licence and attribution texts.
#
#   scripts/install-emoji-data.sh [DEST]                  DEST defaults to data/emoji in the repository (git-ignored)
#   scripts/install-emoji-data.sh --from RAW_DIR [DEST]   no npm: take the already extracted members from RAW_DIR
#                                                         (emoji-datasource/package/..., emojibase-data/package/...,
#                                                         e.g. shared/data/emoji-raw), checked against their sha256
#
# Writes DEST/images/{noto,twemoji}/<codepoints>.png, DEST/manifest.jsonl, DEST/LICENSES/ and keeps the extracted
# sources in DEST/raw/. The npm tarballs are cached in $NUANCE_DATA_CACHE (default: DEST/.cache) and downloaded
# only when missing; their integrity is checked against the pins of data.md. Only the google and twitter members
# are extracted: the Apple and Facebook sheets in the same tarball are never unpacked.
# Needs npm, tar, openssl and a built `nuance` ($NUANCE_BIN, else build/nuance, else nuance on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FROM=""
if [ "${1:-}" = "--from" ]; then
  [ $# -ge 2 ] || { echo "install-emoji-data: --from needs a folder" >&2; exit 2; }
  FROM="$(cd "$2" 2>/dev/null && pwd)" || { echo "install-emoji-data: --from $2: no such folder" >&2; exit 2; }
  shift 2
fi
DEST="${1:-$ROOT/data/emoji}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
CACHE="${NUANCE_DATA_CACHE:-$DEST/.cache}"
mkdir -p "$CACHE"

declare -A INTEGRITY=(
  [emoji-datasource-16.0.0.tgz]="sha512-/qHKqK5Nr3+8zhgO6kHmF43Fm5C8HNn0AaFRIpgw8HF3+uF0Vfc8jgLI1ZQS5ba1vBzksS8NBCjHejwLb2D/Sg=="
  [emojibase-data-17.0.0.tgz]="sha512-Yvgb5AWoHViHV/gq1qr5ZAarcBip+B27/ZLRsUJkbgAEaLlZ/fof9g882LTpmEpyhBNEC0m2SEmItljHsTygjA=="
)
integrity_of() { echo "sha512-$(openssl dgst -sha512 -binary "$1" | base64 -w0)"; }

fetch() {  # fetch <package@version> <tarball name>
  local tgz="$CACHE/$2"
  if [ -f "$tgz" ] && [ "$(integrity_of "$tgz")" = "${INTEGRITY[$2]}" ]; then
    echo "install-emoji-data: $2 (cached)"
    return
  fi
  echo "install-emoji-data: npm pack $1"
  (cd "$CACHE" && npm pack --silent "$1" >/dev/null)
  [ -f "$tgz" ] || { echo "install-emoji-data: npm pack $1 did not produce $2" >&2; exit 1; }
  if [ "$(integrity_of "$tgz")" != "${INTEGRITY[$2]}" ]; then
    echo "install-emoji-data: $2 does not match its pinned integrity ${INTEGRITY[$2]}" >&2
    rm -f "$tgz"
    exit 1
  fi
}
# The members extracted from the two tarballs, with their sha256 (the same files as shared/data/emoji-raw).
MEMBERS_SHA256="\
ee9953a79bf2132b59b1342b217f1c377b3d03d9e7713006f6c3b89eb159f1db  emoji-datasource/package/LICENSE
b22bf9a7f2478beec176a700a7079177fead1056db1452af8394aab54c5a3dbf  emoji-datasource/package/README.md
1d602e65be88772bf8cc368ce16b855d719eeddbafe128d471b80203f494d29f  emoji-datasource/package/emoji.json
b417e9f6cd4bbc10656bbfd5e13b6e9a2545b55e6a4cf7312d75be1faaa34952  emoji-datasource/package/img/google/sheets/32.png
2767ef2e87cbfb6cc12ac46596c339549afaf0ae8771cf51100c8853f6bde632  emoji-datasource/package/img/twitter/sheets/32.png
5c4e1582dcae9429a5d00ec0a64185c3a711f9757b2308fdf275d90b120f6149  emojibase-data/package/LICENSE
ed014f1049bd370c5794f815850156196ac382850f51c3e9f6a9e83553fb3f01  emojibase-data/package/en/data.json"

RAW="$DEST/raw"
rm -rf "$RAW"
mkdir -p "$RAW/emoji-datasource" "$RAW/emojibase-data"
if [ -n "$FROM" ]; then
  echo "install-emoji-data: taking the extracted members from $FROM"
  while read -r _ member; do
    [ -f "$FROM/$member" ] || { echo "install-emoji-data: $FROM/$member is missing" >&2; exit 1; }
    mkdir -p "$RAW/$(dirname "$member")"
    cp "$FROM/$member" "$RAW/$member"
  done <<<"$MEMBERS_SHA256"
else
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-emoji-data: npm is not installed; on a machine without npm, pass the extracted members:" >&2
    echo "  scripts/install-emoji-data.sh --from shared/data/emoji-raw [DEST]" >&2
    exit 1
  fi
  fetch emoji-datasource@16.0.0 emoji-datasource-16.0.0.tgz
  fetch emojibase-data@17.0.0 emojibase-data-17.0.0.tgz
  # Named members only: never the apple/ or facebook/ sheets.
  tar xzf "$CACHE/emoji-datasource-16.0.0.tgz" -C "$RAW/emoji-datasource" \
      package/emoji.json package/LICENSE package/README.md \
      package/img/google/sheets/32.png package/img/twitter/sheets/32.png
  tar xzf "$CACHE/emojibase-data-17.0.0.tgz" -C "$RAW/emojibase-data" package/en/data.json package/LICENSE
fi
if ! (cd "$RAW" && sha256sum --quiet -c - <<<"$MEMBERS_SHA256"); then
  echo "install-emoji-data: the extracted members do not match their pinned sha256" >&2
  exit 1
fi
if find "$RAW" -ipath '*apple*' -o -ipath '*facebook*' | grep -q .; then
  echo "install-emoji-data: Apple or Facebook files were extracted; refusing to go on" >&2
  exit 1
fi

NUANCE="${NUANCE_BIN:-}"
if [ -z "$NUANCE" ]; then
  if [ -x "$ROOT/build/nuance" ]; then NUANCE="$ROOT/build/nuance"
  elif command -v nuance >/dev/null 2>&1; then NUANCE="$(command -v nuance)"
  else echo "install-emoji-data: no nuance binary (run scripts/build.sh or set NUANCE_BIN)" >&2; exit 1
  fi
fi
rm -rf "$DEST/images" "$DEST/manifest.jsonl"
"$NUANCE" prepare-emoji \
    --emoji-json "$RAW/emoji-datasource/package/emoji.json" \
    --sheets-dir "$RAW/emoji-datasource/package/img" \
    --emojibase "$RAW/emojibase-data/package/en/data.json" \
    -o "$DEST" --size 32

LIC="$DEST/LICENSES"
rm -rf "$LIC"
mkdir -p "$LIC"
cp "$ROOT/scripts/emoji-licenses/"* "$LIC/"
cp "$RAW/emoji-datasource/package/LICENSE" "$LIC/MIT-emoji-data.txt"
cp "$RAW/emojibase-data/package/LICENSE" "$LIC/MIT-emojibase.txt"
echo "install-emoji-data: $(wc -l < "$DEST/manifest.jsonl") images in $DEST (licences in $LIC)"
