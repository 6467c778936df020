#!/usr/bin/env python3
"""Writes the DiT original-layout fixtures used by tests/models/test_dit_load.cpp into tests/data/dit/.

The golden case tests/data/golden/dit (diffusers DiTTransformer2DModel, random weights) is rewritten in the layout of
facebookresearch/DiT's checkpoints (DiT-XL-2-256x256.pt: a state dict saved with torch.save): x_embedder.proj,
pos_embed, t_embedder.mlp.{0,2}, y_embedder.embedding_table, blocks.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2,
adaLN_modulation.1}, final_layer.{adaLN_modulation.1, linear}. The original has one timestep/class embedder for all
blocks: block 0's is used (diffusers' converter copies it into every block, the inverse of this).

The reference output is computed by a direct port of the original models.py forward below (not by diffusers): its
timestep features divide the exponent by half (diffusers: half - 1) and its MLP LayerNorm uses eps 1e-6 (diffusers:
1e-5), so it differs slightly from the golden 'out'.

Outputs (committed; the tests never need torch):
    dit_original.pt            torch.save(state_dict) zip, read by nuance through the safe unpickler
    dit_original.safetensors   the same tensors
    dit_original_io.safetensors  hidden_states, timestep, class_labels (the golden's), out (original forward)
Run: /tmp/samplers-venv/bin/python tools/make_dit_original.py   (torch, numpy, safetensors)
"""
import collections
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "tests", "data", "golden", "dit")
OUT = os.path.join(HERE, "..", "tests", "data", "dit")
HEADS, PATCH = 2, 2  # the golden case's config.json


def sincos_2d(dim, grid):  # MAE / DiT get_2d_sincos_pos_embed, numpy float64
    gh = np.arange(grid, dtype=np.float64)
    gw = np.arange(grid, dtype=np.float64)
    g = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid, grid)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)


def to_original(d):
    sd = collections.OrderedDict()
    sd["x_embedder.proj.weight"] = d["pos_embed.proj.weight"]
    sd["x_embedder.proj.bias"] = d["pos_embed.proj.bias"]
    D = d["pos_embed.proj.weight"].shape[0]
    sd["pos_embed"] = torch.from_numpy(sincos_2d(D, 4)).float().unsqueeze(0)  # 8x8 latent / patch 2
    e = "transformer_blocks.0.norm1.emb."
    sd["t_embedder.mlp.0.weight"] = d[e + "timestep_embedder.linear_1.weight"]
    sd["t_embedder.mlp.0.bias"] = d[e + "timestep_embedder.linear_1.bias"]
    sd["t_embedder.mlp.2.weight"] = d[e + "timestep_embedder.linear_2.weight"]
    sd["t_embedder.mlp.2.bias"] = d[e + "timestep_embedder.linear_2.bias"]
    sd["y_embedder.embedding_table.weight"] = d[e + "class_embedder.embedding_table.weight"]
    i = 0
    while f"transformer_blocks.{i}.norm1.linear.weight" in d:
        b, o = f"transformer_blocks.{i}.", f"blocks.{i}."
        for s in ("weight", "bias"):
            sd[o + "attn.qkv." + s] = torch.cat([d[b + f"attn1.to_{n}.{s}"] for n in "qkv"], 0).contiguous()
            sd[o + "attn.proj." + s] = d[b + "attn1.to_out.0." + s]
            sd[o + "mlp.fc1." + s] = d[b + "ff.net.0.proj." + s]
            sd[o + "mlp.fc2." + s] = d[b + "ff.net.2." + s]
            sd[o + "adaLN_modulation.1." + s] = d[b + "norm1.linear." + s]
        i += 1
    for s in ("weight", "bias"):
        sd["final_layer.adaLN_modulation.1." + s] = d["proj_out_1." + s]
        sd["final_layer.linear." + s] = d["proj_out_2." + s]
    return sd, i


def original_forward(sd, depth, x, t, y):  # facebookresearch/DiT models.py DiT.forward, in float64
    sd = {k: v.double() for k, v in sd.items()}
    lin = lambda h, n: F.linear(h, sd[n + ".weight"], sd[n + ".bias"])
    mod = lambda h, shift, scale: h * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
    N, C, H, W = x.shape
    h = F.conv2d(x.double(), sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=PATCH)
    h = h.flatten(2).transpose(1, 2) + sd["pos_embed"]
    D = h.shape[-1]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t[:, None].double() * freqs[None]
    tf = torch.cat([torch.cos(args), torch.sin(args)], -1)
    c = lin(F.silu(lin(tf, "t_embedder.mlp.0")), "t_embedder.mlp.2") + sd["y_embedder.embedding_table.weight"][y]
    for i in range(depth):
        o = f"blocks.{i}."
        sm, cm, gm, sp, cp, gp = lin(F.silu(c), o + "adaLN_modulation.1").chunk(6, 1)
        a = mod(F.layer_norm(h, (D,), eps=1e-6), sm, cm)
        qkv = lin(a, o + "attn.qkv").reshape(N, -1, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1) * (D // HEADS) ** -0.5).softmax(-1)
        a = lin((att @ v).transpose(1, 2).reshape(N, -1, D), o + "attn.proj")
        h = h + gm.unsqueeze(1) * a
        m = mod(F.layer_norm(h, (D,), eps=1e-6), sp, cp)
        h = h + gp.unsqueeze(1) * lin(F.gelu(lin(m, o + "mlp.fc1"), approximate="tanh"), o + "mlp.fc2")
    shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, 1)
    h = lin(mod(F.layer_norm(h, (D,), eps=1e-6), shift, scale), "final_layer.linear")
    Co = h.shape[-1] // (PATCH * PATCH)
    gh, gw = H // PATCH, W // PATCH
    h = h.reshape(N, gh, gw, PATCH, PATCH, Co)
    h = torch.einsum("nhwpqc->nchpwq", h)
    return h.reshape(N, Co, H, W).float()


def main():
    os.makedirs(OUT, exist_ok=True)
    d = load_file(os.path.join(GOLDEN, "dit.safetensors"))
    io = load_file(os.path.join(GOLDEN, "io.safetensors"))
    sd, depth = to_original(d)
    torch.save(sd, os.path.join(OUT, "dit_original.pt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(OUT, "dit_original.safetensors"))
    out = original_forward(sd, depth, io["hidden_states"], io["timestep"], io["class_labels"])
    save_file({"hidden_states": io["hidden_states"], "timestep": io["timestep"], "class_labels": io["class_labels"],
               "out": out.contiguous()}, os.path.join(OUT, "dit_original_io.safetensors"))
    print("blocks", depth, "max |out|", out.abs().max().item(), "max |out - golden out|",
          (out - io["out"]).abs().max().item())


if __name__ == "__main__":
    main()
