#!/usr/bin/env bash
# Training throughput of the first built-in model's config: `nuance train --model ldm` (f32 and --precision bf16)
# against the same architecture in PyTorch on CPU (bench/train_torch.py: f32 and bf16 autocast), one after the other
# in one run, same threads and batch.
# Usage: bench/train_throughput.sh [build dir (default build)] [threads (2)] [steps (20)]
# Needs the emoji data (scripts/install-emoji-data.sh) and a PyTorch: PYTHON=/path/to/python (default python3), e.g.
# a venv with the PyPI wheel (pip install torch --index-url https://download.pytorch.org/whl/cpu), which brings its
# own MKL and oneDNN, or Debian's python3-torch (OpenBLAS).
# Steady state: nuance trains on a 64-image subset of the data, so from the third step on every image's VAE posterior
# is cached (as in a long run after its first epoch) and a step is the UNet/text-encoder step PyTorch is timed on.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"; threads="${2:-2}"; steps="${3:-20}"
py="${PYTHON:-python3}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS="$threads"
mkdir -p "$tmp/data"
ln -s "$here/data/emoji/images" "$tmp/data/images"
head -n 64 "$here/data/emoji/manifest.jsonl" > "$tmp/data/manifest.jsonl"
# A throwaway VAE (the LDM's latents only need the right shape for a speed test).
"$build/nuance" train --model vae --data "$tmp/data" -o "$tmp/vae" --steps 1 --batch 4 -q \
    --arch '{"vae":{"block_out_channels":[32,64]}}' >/dev/null
results=()
for prec in f32 bf16; do
  rm -rf "$tmp/ldm"
  line=$("$build/nuance" train --model ldm --vae "$tmp/vae" --data "$tmp/data" -o "$tmp/ldm" --steps "$((steps + 3))" \
      --batch 32 --checkpoint-every 100000 --precision "$prec" -q | grep '^step median_s')
  echo "nuance ($prec) threads=$threads batch=32 ${line}"
  results+=("nuance $prec ${line}")
done
for mode in "" "--bf16"; do
  line=$("$py" "$here/bench/train_torch.py" --threads "$threads" --batch 32 --steps "$steps" $mode)
  echo "$line"
  results+=("torch ${mode:---f32} ${line}")
done
printf '%s\n' "${results[@]}" | python3 -c '
import re, sys
rows = [l for l in sys.stdin.read().splitlines() if l]
ips = {" ".join(r.split()[:2]): float(re.search(r"images_per_s=([\d.]+)", r).group(1)) for r in rows}
for k, v in ips.items():
    print(f"{k:18s} {v:6.1f} images/s")
nb, nf, tb, tf = ips["nuance bf16"], ips["nuance f32"], ips["torch --bf16"], ips["torch --f32"]
print(f"ratio nuance bf16 / torch bf16 autocast: {nb / tb:.2f}")
print(f"ratio nuance f32 / torch f32: {nf / tf:.2f}")
'
