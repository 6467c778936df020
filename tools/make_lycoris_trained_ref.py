#!/usr/bin/env python3
"""LyCORIS' own reading of LoHa / LoKr files that `nuance train --model lora --network loha|lokr` wrote
(tests/train/test_lora_train.cpp, LycorisInterop): lycoris-lora's kohya loader (`lycoris.kohya.
create_network_from_weights`, 4.1.3 was used) puts each file on diffusers' UNet2DConditionModel and CLIPTextModel of
the built-in model (models/nuance-emoji, f16 weights computed in f32) and applies it (`apply_to`: LyCORIS' forward,
W + scale * delta(W) per layer), and the UNet output for fixed inputs is written beside the files. (Not `merge_to`:
in 4.1.3 it scales a LoHa's delta by (alpha / rank)^2, its get_weight and get_diff_weight both applying the scale;
its own forward, A1111, ComfyUI and nuance apply it once. The LoKr file here has scale 1, where the two agree.) The files themselves were trained on 8 emoji (--limit 8) for 30 steps:

    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/loha --steps 30 \
        --batch 4 --lr 5e-3 --rank 2 --alpha 1 --targets attn --train-text-encoder --save-precision fp16 --network loha
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/lokr --steps 30 \
        --batch 4 --lr 5e-3 --rank 1 --alpha 1 --targets attn+conv --conv-rank 1 --conv-alpha 1 --train-text-encoder \
        --save-precision fp16 --network lokr --factor 4 --decompose-both
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/dora --steps 30 \
        --batch 4 --lr 5e-3 --rank 1 --alpha 1 --targets attn+conv --dora   # f32: LyCORIS computes DoRA in the
                                                                             # dora_scale's dtype
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/tucker --steps 30 \
        --batch 4 --lr 5e-3 --rank 2 --alpha 1 --targets attn+conv --conv-rank 2 --conv-alpha 1 --tucker \
        --train-text-encoder --save-precision fp16
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/loha_tucker \
        --steps 30 --batch 4 --lr 5e-3 --rank 2 --alpha 1 --targets attn+conv --conv-rank 2 --conv-alpha 1 \
        --network loha --tucker --save-precision fp16
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/oft --steps 30 \
        --batch 4 --lr 5e-3 --rank 8 --alpha 1 --targets attn+conv --train-text-encoder --save-precision fp16 \
        --network oft
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/ia3 --steps 30 \
        --batch 4 --lr 5e-3 --rank 8 --alpha 1 --targets ia3 --train-text-encoder --save-precision fp16 --network ia3
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/glora --steps 30 \
        --batch 4 --lr 5e-3 --rank 4 --alpha 2 --targets attn+conv --train-text-encoder --save-precision fp16 \
        --network glora
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/boft --steps 30 \
        --batch 4 --lr 5e-3 --rank 10 --alpha 1 --targets attn+conv --train-text-encoder --save-precision fp16 \
        --network boft
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/full --steps 30 \
        --batch 4 --lr 1e-3 --rank 1 --alpha 1 --targets attn --save-precision fp16 --network full
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/norm --steps 30 \
        --batch 4 --lr 5e-3 --rank 2 --alpha 1 --targets attn+conv --conv-rank 1 --conv-alpha 1 --train-norm \
        --train-text-encoder --save-precision fp16   # LoRA + LyCORIS' NormModules (w_norm, b_norm) on 50 norms
    nuance train -q --model lora --base models/nuance-emoji --data data/emoji --limit 8 -o /tmp/lyco/oft_cr --steps 30 \
        --batch 4 --lr 5e-3 --rank 8 --alpha 1 --targets attn+conv --train-text-encoder --save-precision fp16 \
        --network oft --constraint 1e-4 --rescaled   # LyCORIS' constraint (active after 30 steps) and rescale
    cp /tmp/lyco/oft_cr/oft_cr.safetensors /tmp/lyco/norm/norm.safetensors /tmp/lyco/full/full.safetensors /tmp/lyco/boft/boft.safetensors /tmp/lyco/glora/glora.safetensors /tmp/lyco/loha/loha.safetensors /tmp/lyco/lokr/lokr.safetensors /tmp/lyco/dora/dora.safetensors \
        /tmp/lyco/tucker/tucker.safetensors /tmp/lyco/loha_tucker/loha_tucker.safetensors /tmp/lyco/oft/oft.safetensors \
        /tmp/lyco/ia3/ia3.safetensors tests/data/lycoris_trained/
    python tools/make_lycoris_trained_ref.py   # (pip install diffusers transformers lycoris-lora)
"""
import os

import torch
from diffusers import UNet2DConditionModel
from lycoris import kohya
from safetensors.torch import save_file
from transformers import CLIPTextModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "nuance-emoji")
DIR = os.path.join(ROOT, "tests", "data", "lycoris_trained")

# LyCORIS 4.1.3 lists time_embedding.linear_1 twice on SD UNets (by module type and by name) when it builds its
# default network, which the loaded modules then replace: drop the names first.
kohya.LycorisNetworkKohya.apply_preset({"unet_target_name": ["conv_in", "conv_out"]})

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 16, 16, generator=g)
t = torch.tensor([50.0, 600.0])
ids = torch.randint(0, 49407, (2, 77), generator=g)
ids[:, 0] = 49406
ids[:, 10:] = 49407
out = {"x": x, "t": t, "ids": ids.to(torch.int64)}
# dora: a LoRA with DoRA magnitudes (LyCORIS' LoConModule, weight_decompose); tucker: LoCon with use_tucker cores
def load_ia3(path, te, unet):
    """LyCORIS 4.1.3's kohya loader cannot build IA3 modules (it passes on_input to make_module_from_state_dict, which
    takes only the weight): the same, by hand, with LyCORIS' own IA3Module (its train_on_input from the file)."""
    from lycoris.modules.ia3 import IA3Module
    from safetensors.torch import load_file
    sd = load_file(path)
    mods = []
    for prefix, model in (("lora_unet", unet), ("lora_te", te)):
        for name, module in model.named_modules():
            lora_name = (prefix + "_" + name).replace(".", "_")
            if lora_name + ".weight" in sd:
                m = IA3Module(lora_name, module, 1.0, train_on_input=bool(sd[lora_name + ".on_input"].item()))
                m.weight.data.copy_(sd[lora_name + ".weight"].float())
                m.apply_to()
                mods.append(m)
    return mods, sd


for algo in ("loha", "lokr", "dora", "tucker", "loha_tucker", "oft", "ia3", "glora", "boft", "full", "norm", "oft_cr"):
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder", torch_dtype=torch.float32)
    path = os.path.join(DIR, algo + ".safetensors")
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=te(ids)[0]).sample
        if algo == "ia3":
            mods, sd = load_ia3(path, te, unet)
        else:
            net, sd = kohya.create_network_from_weights(1.0, path, None, te, unet, for_inference=True)
            net.apply_to(te, unet, apply_text_encoder=True, apply_unet=True)
            mods = net.unet_loras + net.text_encoder_loras
        n = len(mods)
        files = {k.split(".")[0] for k in sd}
        assert n == len(files), (n, len(files))  # every module of the file found its layer
        merged = unet(x, t, encoder_hidden_states=te(ids)[0]).sample
    if algo == "dora":
        assert all(m.wd and m.wd_on_out for m in mods)  # the magnitude per output row
    if algo == "oft_cr":  # every module read with its constraint and rescale, and the constraint binds
        assert all(m.rescaled and m.constraint > 0 for m in mods)
        active = 0
        for m in mods:
            q = m.oft_blocks - m.oft_blocks.transpose(1, 2)
            active += int(torch.norm(q) + 1e-8 > m.constraint)
        print("oft_cr: constraint active on", active, "of", n)
        assert active > n // 2
    if algo == "norm":
        assert sum(type(m).__name__ == "NormModule" for m in mods) == 50  # every norm of the file found its layer
    if algo in ("tucker", "loha_tucker"):
        assert sum(getattr(m, "tucker", False) for m in mods) > 0  # the 3x3 convolutions' cores were read
    print(algo, n, "modules,", sorted({type(m).__name__ for m in mods}),
          "largest change", (merged - base).abs().max().item())
    out[algo + ".base"] = base.contiguous()
    out[algo + ".merged"] = merged.contiguous()
save_file(out, os.path.join(DIR, "reference.safetensors"))
