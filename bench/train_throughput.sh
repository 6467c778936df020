#!/usr/bin/env bash
# Training throughput of the default emoji model's config: `nuance train --model ldm` against the same
# architecture in PyTorch on CPU (bench/train_torch.py), one after the other in one run, same threads and batch.
# Usage: bench/train_throughput.sh [build dir (default build)] [threads (2)] [steps (20)]
# Needs the emoji data (scripts/install-emoji-data.sh) and Debian's python3-torch (apt-get install python3-torch).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"; threads="${2:-2}"; steps="${3:-20}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS="$threads"
# A throwaway VAE (the LDM's latents only need the right shape for a speed test).
"$build/nuance" train --model vae --data "$here/data/emoji" -o "$tmp/vae" --steps 1 --batch 4 -q \
    --arch '{"vae":{"block_out_channels":[32,64]}}' >/dev/null
nu=$("$build/nuance" train --model ldm --vae "$tmp/vae" --data "$here/data/emoji" -o "$tmp/ldm" --steps "$((steps + 3))" \
    --batch 32 --checkpoint-every 100000 -q | grep '^step median_s')
echo "nuance ${nu}"
py=$("${PYTHON:-/usr/bin/python3}" "$here/bench/train_torch.py" --threads "$threads" --batch 32 --steps "$steps")
echo "$py"
python3 - "$nu" "$py" <<'PY'
import re, sys
n = float(re.search(r"images_per_s=([\d.]+)", sys.argv[1]).group(1))
t = float(re.search(r"images_per_s=([\d.]+)", sys.argv[2]).group(1))
print(f"ratio nuance/torch images_per_s={n / t:.2f}")
PY
