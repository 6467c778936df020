#!/usr/bin/env python3
"""LyCORIS' IA3, OFT, BOFT, GLoRA, full-diff and norm adapters, made by LyCORIS itself, and LyCORIS' own forward with
them applied, for tests/adapters/test_lora_lycoris.cpp (nuance reads these kinds, it does not train them).

For each algorithm, lycoris-lora's kohya network (`lycoris.kohya.create_network`, 4.1.3 was used) is built on
diffusers' UNet2DConditionModel and CLIPTextModel of the built-in model (models/nuance-emoji, f16 weights computed in
f32), every adapter tensor is set to seeded random values (a fresh network is the identity), the file is written with
LyCORIS' save_weights (kohya names: lora_unet_*, lora_te_*), read back with LyCORIS' kohya loader
(`create_network_from_weights`, multiplier 0.7: the strength rules matter for BOFT and OFT's rescale), applied
(`apply_to`: LyCORIS' forward, the merged weight per layer), and the UNet output for fixed inputs is written beside
the files, with the base model's.

    python tools/make_lycoris_algos_ref.py   # (pip install diffusers transformers lycoris-lora)
"""
import os

import torch
from diffusers import UNet2DConditionModel
from lycoris import kohya
from safetensors.torch import save_file
from transformers import CLIPTextModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "nuance-emoji")
DIR = os.path.join(ROOT, "tests", "data", "lycoris_algos")
STRENGTH = 0.7

# A few layers of each kind (linear with and without bias, 1x1 / 3x3 convs, the text encoder's projections and
# norms), so that the files stay small.
SMALL = {
    "enable_conv": True,
    "unet_target_module": [],
    "unet_target_name": [
        "conv_in",
        "time_embedding.linear_1",
        "down_blocks.1.attentions.0.proj_in",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0",
        "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
        "mid_block.resnets.0.conv1",
        "mid_block.resnets.0.norm1",
        "up_blocks.1.resnets.0.conv_shortcut",
        "up_blocks.1.attentions.0.transformer_blocks.0.norm2",
        "conv_out",
    ],
    "text_encoder_target_module": [],
    "text_encoder_target_name": [
        "text_model.encoder.layers.0.self_attn.q_proj",
        "text_model.encoder.layers.1.mlp.fc2",
        "text_model.encoder.layers.2.self_attn.out_proj",
        "text_model.encoder.layers.3.layer_norm1",
    ],
}

# IA3 as LyCORIS' "ia3" preset places it (keys and values; the feed-forward outputs scale their inputs), spelled
# out: 4.1.3 matches the preset's short names against nothing on diffusers' models.
IA3_NAMES = ["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v",
             "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2", "mid_block.attentions.0.proj_in"]
IA3_TE = ["text_model.encoder.layers.0.self_attn.k_proj", "text_model.encoder.layers.1.self_attn.v_proj",
          "text_model.encoder.layers.1.mlp.fc2"]
IA3 = dict(SMALL, enable_conv=True, unet_target_name=IA3_NAMES + ["conv_in", "conv_out"], text_encoder_target_name=IA3_TE,
           name_algo_map={n: {"train_on_input": True} for n in (IA3_NAMES[2], IA3_TE[2], "conv_out")})
FULL = dict(SMALL, unet_target_name=["conv_in", "time_embedding.linear_1", "down_blocks.1.attentions.0.proj_in",
                                     "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0", "conv_out"])
BOFT = dict(SMALL, unet_target_name=["conv_in", "time_embedding.linear_1", "conv_out"])

# name: (create_network kwargs, network_dim, network_alpha, {parameter-name suffix: random scale})
CASES = {
    "ia3": (dict(algo="ia3", preset=IA3), 1, 1, {"weight": 0.3}),
    "oft": (dict(algo="diag-oft", rescaled=True, constraint=1e-3, preset=SMALL), 8, 1,
            {"oft_blocks": 0.05, "rescale": 0.1}),
    "oft_plain": (dict(algo="diag-oft", preset=SMALL), 4, 1, {"oft_blocks": 0.05}),
    # BOFT needs out = (even block) * 2^k: 96 -> 16 blocks of 6, 384 -> 64 of 6, 128 -> 16 of 8, 4 -> 1 of 4
    "boft": (dict(algo="boft", rescaled=True, preset=BOFT), 8, 1, {"oft_blocks": 0.05, "rescale": 0.1}),
    "glora": (dict(algo="glora", preset=SMALL), 4, 2, {"weight": 0.1}),
    "full": (dict(algo="full", preset=FULL), 1, 1, {"weight": 0.01, "bias": 0.05}),
    "norm": (dict(algo="lora", train_norm=True, preset=SMALL), 2, 1, {"weight": 0.1, "w_norm": 0.1, "b_norm": 0.1}),
}

g = torch.Generator().manual_seed(0)
x = torch.randn(2, 4, 16, 16, generator=g)
t = torch.tensor([50.0, 600.0])
ids = torch.randint(0, 49407, (2, 77), generator=g)
ids[:, 0] = 49406
ids[:, 10:] = 49407
out = {"x": x, "t": t, "ids": ids.to(torch.int64)}
for case, (name, (kw, dim, alpha, scales)) in enumerate(CASES.items()):
    torch.manual_seed(1)
    unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder", torch_dtype=torch.float32)
    if isinstance(kw.get("preset"), dict):
        kohya.PRESET["__case__"] = dict(kw["preset"])
        kw = dict(kw, preset="__case__")
    net = kohya.create_network(1.0, dim, alpha, None, te, unet, **{k: str(v) if isinstance(v, bool) else v
                                                                   for k, v in kw.items()})
    with torch.no_grad():
        base = unet(x, t, encoder_hidden_states=te(ids)[0]).sample
    net.apply_to(te, unet, apply_text_encoder=True, apply_unet=True)
    gen = torch.Generator().manual_seed(100 + case)
    with torch.no_grad():
        for pname, p in net.named_parameters():
            leaf = pname.split(".")[-1]
            s = scales.get(leaf, scales.get("weight", 0.1))
            p.copy_((1.0 if leaf == "rescale" else 0.0) + s * torch.randn(p.shape, generator=gen))
        for m in net.unet_loras + net.text_encoder_loras:
            m.multiplier = STRENGTH
        direct = unet(x, t, encoder_hidden_states=te(ids)[0]).sample
    path = os.path.join(DIR, name + ".safetensors")
    net.save_weights(path, torch.float32, {"ss_network_module": "lycoris.kohya", "ss_network_args": str(kw)})
    mods = net.unet_loras + net.text_encoder_loras
    n = len(mods)
    del net
    merged = direct
    if name != "ia3":  # 4.1.3's loader cannot read IA3 (make_module_from_state_dict gets on_input it does not take)
        unet = UNet2DConditionModel.from_pretrained(MODEL, subfolder="unet", torch_dtype=torch.float32)
        te = CLIPTextModel.from_pretrained(MODEL, subfolder="text_encoder", torch_dtype=torch.float32)
        with torch.no_grad():
            net, sd = kohya.create_network_from_weights(STRENGTH, path, None, te, unet, for_inference=True)
            files = {k.split(".")[0] for k in sd}
            assert len(net.unet_loras) + len(net.text_encoder_loras) == len(files) == n, (n, sorted(files))
            net.apply_to(te, unet, apply_text_encoder=True, apply_unet=True)
            merged = unet(x, t, encoder_hidden_states=te(ids)[0]).sample
        # the file read back gives the forward of the network that wrote it
        assert (merged - direct).abs().max().item() < 1e-4, (merged - direct).abs().max().item()
    print(name, n, "modules,", sorted({type(m).__name__ for m in mods}), "largest change",
          (merged - base).abs().max().item(), "size", os.path.getsize(path))
    out[name + ".base"] = base.contiguous()
    out[name + ".merged"] = merged.contiguous()
save_file(out, os.path.join(DIR, "reference.safetensors"))
