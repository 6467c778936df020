#!/usr/bin/env python3
# Random full-width T5-XXL encoder weights (transformers keys, F16; 9.5 GB for 24 layers) for timing only:
#   python3 tools/make_random_t5xxl.py LAYERS OUT.safetensors     (numpy; delete the file afterwards)
# Values are a tiled random block scaled by 1/sqrt(fan_in): right magnitudes, no meaning.
import json, sys, numpy as np
layers = int(sys.argv[1]); out = sys.argv[2]
D, F, H, K, V, R = 4096, 10240, 64, 64, 32128, 32
shapes = [("shared.weight", (V, D))]
for i in range(layers):
    p = f"encoder.block.{i}."
    for n in "qkv": shapes.append((p + f"layer.0.SelfAttention.{n}.weight", (H * K, D)))
    shapes.append((p + "layer.0.SelfAttention.o.weight", (D, H * K)))
    if i == 0: shapes.append((p + "layer.0.SelfAttention.relative_attention_bias.weight", (R, H)))
    shapes.append((p + "layer.0.layer_norm.weight", (D,)))
    shapes.append((p + "layer.1.DenseReluDense.wi_0.weight", (F, D)))
    shapes.append((p + "layer.1.DenseReluDense.wi_1.weight", (F, D)))
    shapes.append((p + "layer.1.DenseReluDense.wo.weight", (D, F)))
    shapes.append((p + "layer.1.layer_norm.weight", (D,)))
shapes.append(("encoder.final_layer_norm.weight", (D,)))
hdr, off = {}, 0
for n, s in shapes:
    nb = int(np.prod(s)) * 2
    hdr[n] = {"dtype": "F16", "shape": list(s), "data_offsets": [off, off + nb]}; off += nb
h = json.dumps(hdr).encode(); h += b" " * ((8 - (len(h) + 8) % 8) % 8)
rng = np.random.default_rng(0)
block = (rng.standard_normal(1 << 24) * 0.02).astype(np.float16)
with open(out, "wb") as f:
    f.write(len(h).to_bytes(8, "little")); f.write(h)
    for n, s in shapes:
        cnt = int(np.prod(s))
        if n.endswith("layer_norm.weight"):
            f.write(np.ones(cnt, np.float16).tobytes()); continue
        scale = 1.0 if "relative" in n or n == "shared.weight" else (1.0 / np.sqrt(s[1]) / 0.02)
        b = (block * np.float16(scale)).astype(np.float16)
        while cnt > 0:
            k = min(cnt, b.size); f.write(b[:k].tobytes()); cnt -= k
            b = np.roll(b, 12345)
print(out, off)
