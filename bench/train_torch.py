#!/usr/bin/env python3
"""Training throughput of the default emoji model's architecture in PyTorch (CPU), for the side-by-side with
`nuance train` (bench/train_throughput.sh). Same shapes as nuance's ldm default (src/train/trainer.cpp
default_arch): UNet2DConditionModel with block_out_channels (64, 128, 128), one resnet per level, cross-attention
transformers on levels 1-2 and the mid block (4 heads, GEGLU feed-forward, conv proj_in/proj_out), on 16x16x4
latents; a CLIP-style text encoder (49,408 tokens, 77 positions, width 128, 3 layers, 4 heads, quick-GELU) trained
jointly. One step = text encoder + UNet forward, MSE loss, backward, grad-norm clip, AdamW, EMA update, as nuance
does. Random latents and token ids (nuance also loads and encodes data, so the comparison favours PyTorch).
Usage: python3 bench/train_torch.py [--threads 2] [--batch 32] [--steps 20] [--warmup 3] [--bf16] [--channels-last]
                                    [--compile]
--bf16 runs forward and backward under torch.autocast("cpu", torch.bfloat16) (f32 master weights, as nuance's
--precision bf16); --channels-last stores the UNet in NHWC; --compile wraps both models in torch.compile (inductor).
The optimizer is AdamW with fused=True where the installed torch has it (2.4+), the EMA a foreach lerp.
"""
import argparse, math, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Resnet(nn.Module):
    def __init__(s, cin, cout, temb):
        super().__init__()
        s.norm1, s.conv1 = nn.GroupNorm(32, cin), nn.Conv2d(cin, cout, 3, padding=1)
        s.temb = nn.Linear(temb, cout)
        s.norm2, s.conv2 = nn.GroupNorm(32, cout), nn.Conv2d(cout, cout, 3, padding=1)
        s.short = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(s, x, emb):
        h = s.conv1(F.silu(s.norm1(x))) + s.temb(F.silu(emb))[:, :, None, None]
        h = s.conv2(F.silu(s.norm2(h)))
        return h + (s.short(x) if s.short is not None else x)


class Attn(nn.Module):
    def __init__(s, dim, ctx, heads):
        super().__init__()
        s.h = heads
        s.q, s.k, s.v = nn.Linear(dim, dim, bias=False), nn.Linear(ctx, dim, bias=False), nn.Linear(ctx, dim, bias=False)
        s.o = nn.Linear(dim, dim)

    def forward(s, x, c=None, causal=False):
        c = x if c is None else c
        B, L, D = x.shape
        q, k, v = (t.view(B, -1, s.h, D // s.h).transpose(1, 2) for t in (s.q(x), s.k(c), s.v(c)))
        w = (q @ k.transpose(-1, -2)) / math.sqrt(D // s.h)
        if causal:
            w = w.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
        return s.o((w.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    def __init__(s, dim, ctx, heads):
        super().__init__()
        s.n1, s.a1, s.n2, s.a2, s.n3 = nn.LayerNorm(dim), Attn(dim, dim, heads), nn.LayerNorm(dim), Attn(dim, ctx, heads), nn.LayerNorm(dim)
        s.proj, s.out = nn.Linear(dim, dim * 8), nn.Linear(dim * 4, dim)

    def forward(s, x, c):
        x = x + s.a1(s.n1(x))
        x = x + s.a2(s.n2(x), c)
        h, g = s.proj(s.n3(x)).chunk(2, -1)
        return x + s.out(h * F.gelu(g))


class Transformer(nn.Module):
    def __init__(s, ch, ctx, heads):
        super().__init__()
        s.norm, s.pin, s.block, s.pout = nn.GroupNorm(32, ch, eps=1e-6), nn.Conv2d(ch, ch, 1), Block(ch, ctx, heads), nn.Conv2d(ch, ch, 1)

    def forward(s, x, c):
        B, C, H, W = x.shape
        h = s.pin(s.norm(x)).permute(0, 2, 3, 1).reshape(B, H * W, C)
        h = s.block(h, c).reshape(B, H, W, C).permute(0, 3, 1, 2)
        return s.pout(h) + x


class UNet(nn.Module):
    def __init__(s, ch=(64, 128, 128), attn=(False, True, True), ctx=128, heads=4, cin=4):
        super().__init__()
        temb = 4 * ch[0]
        s.ch0 = ch[0]
        s.t1, s.t2 = nn.Linear(ch[0], temb), nn.Linear(temb, temb)
        s.conv_in = nn.Conv2d(cin, ch[0], 3, padding=1)
        s.down, prev = nn.ModuleList(), ch[0]
        for i, c in enumerate(ch):
            lv = nn.ModuleDict({"res": Resnet(prev, c, temb)})
            if attn[i]: lv["att"] = Transformer(c, ctx, heads)
            if i + 1 < len(ch): lv["down"] = nn.Conv2d(c, c, 3, stride=2, padding=1)
            s.down.append(lv)
            prev = c
        s.mid1, s.mida, s.mid2 = Resnet(prev, prev, temb), Transformer(prev, ctx, heads), Resnet(prev, prev, temb)
        s.up = nn.ModuleList()
        for i in range(len(ch)):
            lvl = len(ch) - 1 - i
            out, skip_in = ch[lvl], ch[lvl - 1] if lvl > 0 else ch[0]
            res, att = nn.ModuleList(), nn.ModuleList()
            for j in range(2):
                res.append(Resnet((prev if j == 0 else out) + (skip_in if j == 1 else out), out, temb))
                if attn[lvl]: att.append(Transformer(out, ctx, heads))
            lv = nn.ModuleDict({"res": res, "att": att})
            if i + 1 < len(ch): lv["up"] = nn.Conv2d(out, out, 3, padding=1)
            s.up.append(lv)
            prev = out
        s.norm_out, s.conv_out = nn.GroupNorm(32, ch[0]), nn.Conv2d(ch[0], cin, 3, padding=1)

    def forward(s, x, t, c):
        half = s.ch0 // 2
        f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        a = t[:, None].float() * f[None]
        emb = s.t2(F.silu(s.t1(torch.cat([a.cos(), a.sin()], -1))))
        h = s.conv_in(x)
        skips = [h]
        for lv in s.down:
            h = lv["res"](h, emb)
            if "att" in lv: h = lv["att"](h, c)
            skips.append(h)
            if "down" in lv:
                h = lv["down"](h)
                skips.append(h)
        h = s.mid2(s.mida(s.mid1(h, emb), c), emb)
        for lv in s.up:
            for j, r in enumerate(lv["res"]):
                h = r(torch.cat([h, skips.pop()], 1), emb)
                if len(lv["att"]): h = lv["att"][j](h, c)
            if "up" in lv:
                h = lv["up"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return s.conv_out(F.silu(s.norm_out(h)))


class TextEncoder(nn.Module):
    def __init__(s, vocab=49408, pos=77, d=128, layers=3, heads=4):
        super().__init__()
        s.tok, s.pos = nn.Embedding(vocab, d), nn.Parameter(torch.randn(pos, d) * 0.02)
        s.layers = nn.ModuleList(nn.ModuleDict({"n1": nn.LayerNorm(d), "a": Attn(d, d, heads), "n2": nn.LayerNorm(d),
                                                "f1": nn.Linear(d, 4 * d), "f2": nn.Linear(4 * d, d)}) for _ in range(layers))
        for l in s.layers:  # CLIP's q/k/v have biases
            for p in ("q", "k", "v"):
                setattr(l["a"], p, nn.Linear(d, d))
        s.final = nn.LayerNorm(d)

    def forward(s, ids):
        x = s.tok(ids) + s.pos[: ids.shape[1]]
        for l in s.layers:
            x = x + l["a"](l["n1"](x), causal=True)
            h = l["f1"](l["n2"](x))
            x = x + l["f2"](h * torch.sigmoid(1.702 * h))
        return s.final(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    unet, te = UNet(), TextEncoder()
    params = list(unet.parameters()) + list(te.parameters())
    try:
        opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=True)
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    ema = [p.detach().clone() for p in params]
    if a.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    fwd_unet, fwd_te = (torch.compile(unet), torch.compile(te)) if a.compile else (unet, te)
    n_params = sum(p.numel() for p in params)
    times = []
    for step in range(a.warmup + a.steps):
        x0 = torch.randn(a.batch, 4, 16, 16)
        if a.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        ids = torch.randint(0, 49408, (a.batch, 77))
        t = torch.randint(0, 1000, (a.batch,))
        noise = torch.randn_like(x0)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            pred = fwd_unet(x0 + noise, t, fwd_te(ids))
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            if hasattr(torch, "_foreach_lerp_"):
                torch._foreach_lerp_(ema, params, 0.001)
            else:
                for e, p in zip(ema, params):
                    e.lerp_(p, 0.001)
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    mode = ("bf16 autocast" if a.bf16 else "f32") + (" channels_last" if a.channels_last else "") + \
        (" compiled" if a.compile else "")
    print(f"torch {torch.__version__} ({mode}) threads={a.threads} params={n_params} batch={a.batch} "
          f"step median_s={med:.4f} min_s={min(times):.4f} images_per_s={a.batch / med:.1f}")


if __name__ == "__main__":
    main()
