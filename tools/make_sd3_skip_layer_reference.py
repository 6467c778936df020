#!/usr/bin/env python3
"""Reference for SD3 skip-layer guidance: the golden 'sd35' transformer (tests/data/golden/sd3_transformer) run with
transformer block(s) left out, exactly as diffusers >= 0.32 does for `skip_layers` (the block is not called; the
streams pass through unchanged). diffusers 0.31 has no skip_layers, so the skipped blocks are removed from the
ModuleList, which is the same computation.

Usage: python tools/make_sd3_skip_layer_reference.py  (writes tests/data/mmdit/skip_layers_sd35.safetensors)
Needs torch, diffusers (0.31), safetensors.
"""
import json
import os

import torch
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file, save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
case = os.path.join(root, "tests/data/golden/sd3_transformer")
cfg = json.load(open(os.path.join(case, "case.json")))["models"]["sd35"]["config"]
cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
model = SD3Transformer2DModel(**cfg)
model.load_state_dict(load_file(os.path.join(case, "sd35.safetensors")), strict=True)
model.eval()
io = load_file(os.path.join(case, "io.safetensors"))

out = {}
with torch.no_grad():
    for skip in ([1], [0, 1]):
        full = model.transformer_blocks
        model.transformer_blocks = torch.nn.ModuleList([b for i, b in enumerate(full) if i not in skip])
        y = model(hidden_states=io["sd35.hidden_states"], encoder_hidden_states=io["sd35.encoder_hidden_states"],
                  pooled_projections=io["sd35.pooled_projections"], timestep=io["sd35.timestep"]).sample
        model.transformer_blocks = full
        out["out_skip_" + "_".join(map(str, skip))] = y.contiguous()
    full = model(hidden_states=io["sd35.hidden_states"], encoder_hidden_states=io["sd35.encoder_hidden_states"],
                 pooled_projections=io["sd35.pooled_projections"], timestep=io["sd35.timestep"]).sample
    print("full vs golden max abs diff:", (full - io["sd35.out"]).abs().max().item())
dst = os.path.join(root, "tests/data/mmdit/skip_layers_sd35.safetensors")
save_file(out, dst, metadata={"source": "tools/make_sd3_skip_layer_reference.py", "diffusers": "0.31.0"})
print("wrote", dst, {k: list(v.shape) for k, v in out.items()})
