#!/bin/bash
# A 512² CFG step of one model from its bf16/f16 file and from its q8_0 / q4_0 GGUF files, W8A8 (int8 products, the
# default on AVX-512 VNNI) against weight-only (NUANCE_Q8_W8A8=0), interleaved over ROUNDS rounds.
#   tools/bench_quant_step.sh build/nuance sd15.safetensors sd15_q8_0.gguf sd15_q4_0.gguf [ROUNDS]
# Files: nuance make-random --family sd15 --dtype f16 -o sd15.safetensors;
#        nuance quantize -m sd15.safetensors --type q8_0 --layout full -o sd15_q8_0.gguf (and q4_0).
set -euo pipefail
N=$1 F16=$2 Q8=$3 Q4=$4 ROUNDS=${5:-3}
for r in $(seq 1 "$ROUNDS"); do
  for cfg in "bf16 $F16 0" "q8_0_w8a8 $Q8 1" "q8_0_weight_only $Q8 0" "q4_0_w8a8 $Q4 1" "q4_0_weight_only $Q4 0"; do
    set -- $cfg
    echo "== $1 round $r"
    NUANCE_Q8_W8A8=$3 OMP_WAIT_POLICY=passive /usr/bin/time -f "time_user=%U time_sys=%S time_wall=%e rss_kb=%M" \
      "$N" bench -m "$2" -W 512 -H 512 --repeat 2 --steps 1 -t 2 --precision bf16 --parts text,step 2>&1 |
      grep -E 'median|rss|time_'
  done
done
