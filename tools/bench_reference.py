#!/usr/bin/env python3
"""diffusers / transformers on CPU: the reference side of the README's SD3.5 / Flux / DiT / T5-XXL speed tables.

Builds a full-size model from its published config with random weights (nothing is downloaded), then times the
part the README compares, one JSON line per figure:
  {"model": ..., "part": ..., "res": ..., "dtype": ..., "median_s": ..., "min_s": ..., "runs": ..., "peak_rss_mb": ...}

  sd35m   SD3.5-Medium transformer, one forward (batch 2 = one CFG step) at --res
  sd35l   SD3.5-Large transformer, same
  flux    Flux.1-dev: one double-stream block and one single-stream block at --res's token count (batch 1; the
          whole model, 24 GB in bf16, does not fit beside anything else on a 24 GB machine), and the step time
          extrapolated as 19 double + 38 single blocks
  dit     DiT-XL/2 forward (batch 2) at --res (256 or 512)
  t5      T5-XXL encoder, one prompt of --tokens tokens (256 SD3, 512 Flux)
  vae16   the 16-channel SD3/Flux VAE decoder at --res

--dtype fp32 runs in float32; bf16 runs under torch.autocast("cpu", dtype=torch.bfloat16) with float32 weights
(diffusers' CPU bf16 setting); bf16w keeps the weights in bfloat16 too. Threads: --threads (default 2).
Usage: /tmp/samplers-venv/bin/python tools/bench_reference.py sd35m --res 1024 --dtype fp32
"""
import argparse
import contextlib
import json
import resource
import statistics
import time

import torch


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).mul_(0.02).to(p.dtype))
    return module.eval()


def timed(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def sd3(args, large):
    from diffusers import SD3Transformer2DModel
    if large:
        cfg = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
                   num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432,
                   pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192, qk_norm="rms_norm")
    else:
        cfg = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                   num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                   pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=384, qk_norm="rms_norm",
                   dual_attention_layers=tuple(range(13)))
    m = randomize(SD3Transformer2DModel(**cfg))
    n, h = 2, args.res // 8
    x = torch.randn(n, 16, h, h)
    ctx = torch.randn(n, 333, 4096)
    pooled = torch.randn(n, 2048)
    t = torch.tensor([500.0] * n)
    return [("transformer_step", lambda: m(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled,
                                             timestep=t, return_dict=False))]


def flux(args):
    from diffusers.models.transformers.transformer_flux import (FluxSingleTransformerBlock,
                                                                 FluxTransformerBlock)
    from diffusers.models.embeddings import FluxPosEmbed
    d, heads, head_dim = 3072, 24, 128
    dbl = randomize(FluxTransformerBlock(dim=d, num_attention_heads=heads, attention_head_dim=head_dim))
    sgl = randomize(FluxSingleTransformerBlock(dim=d, num_attention_heads=heads,
                                               attention_head_dim=head_dim))
    h = args.res // 16  # packed 2x2 latent grid
    img_tokens, txt_tokens = h * h, 512
    ids = torch.cat([torch.zeros(txt_tokens, 3),
                     torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(h).float(), torch.arange(h).float(),
                                                indexing="ij"), -1).reshape(-1, 3)])
    rope = FluxPosEmbed(theta=10000, axes_dim=[16, 56, 56])(ids)
    img = torch.randn(1, img_tokens, d)
    txt = torch.randn(1, txt_tokens, d)
    temb = torch.randn(1, d)
    joint = torch.randn(1, img_tokens + txt_tokens, d)
    return [("double_block", lambda: dbl(hidden_states=img, encoder_hidden_states=txt, temb=temb,
                                        image_rotary_emb=rope)),
            ("single_block", lambda: sgl(hidden_states=joint, temb=temb, image_rotary_emb=rope))]


def dit(args):
    from diffusers import DiTTransformer2DModel
    m = randomize(DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                        num_layers=28, sample_size=args.res // 8, patch_size=2,
                                        num_embeds_ada_norm=1000))
    h = args.res // 8
    x = torch.randn(2, 4, h, h)
    t = torch.tensor([500, 500])
    y = torch.tensor([207, 1000])
    return [("transformer_step", lambda: m(x, timestep=t, class_labels=y, return_dict=False))]


def t5(args):
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                   feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128)
    m = randomize(T5EncoderModel(cfg))
    ids = torch.randint(0, 32000, (1, args.tokens))
    return [("t5_encode", lambda: m(input_ids=ids))]


def vae16(args):
    from diffusers import AutoencoderKL
    m = randomize(AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16,
                                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                                block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                                use_quant_conv=False, use_post_quant_conv=False))
    z = torch.randn(1, 16, args.res // 8, args.res // 8)
    return [("vae_decode", lambda: m.decode(z, return_dict=False))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["sd35m", "sd35l", "flux", "dit", "t5", "vae16"])
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--dtype", choices=["fp32", "bf16", "bf16w"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.wdtype = torch.bfloat16 if args.dtype == "bf16w" else torch.float32
    # Build in the weight dtype directly: a float32 T5-XXL is 19 GB before any .to(bfloat16).
    torch.set_default_dtype(args.wdtype)
    builders = {"sd35m": lambda: sd3(args, False), "sd35l": lambda: sd3(args, True), "flux": lambda: flux(args),
                "dit": lambda: dit(args), "t5": lambda: t5(args), "vae16": lambda: vae16(args)}
    parts = builders[args.model]()
    torch.set_default_dtype(torch.float32)
    amp = (torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext())
    results, cpus = {}, {}
    with torch.inference_mode(), amp:
        for part, fn in parts:
            times, cpu = timed(fn, args.runs, args.warmup)
            results[part] = statistics.median(times)
            cpus[part] = statistics.median(cpu)
            print(json.dumps({"model": args.model, "part": part, "res": args.res, "tokens": args.tokens,
                              "dtype": args.dtype, "threads": args.threads, "median_s": round(statistics.median(times), 4),
                              "min_s": round(min(times), 4), "runs": len(times),
                              "cpu_s": round(statistics.median(cpu), 3), "peak_rss_mb": peak_rss_mb(),
                              "torch": torch.__version__}), flush=True)
    if args.model == "flux":
        step = 19 * results["double_block"] + 38 * results["single_block"]
        step_cpu = 19 * cpus["double_block"] + 38 * cpus["single_block"]
        print(json.dumps({"model": "flux", "part": "step_extrapolated_19x_double_38x_single", "res": args.res,
                          "dtype": args.dtype, "threads": args.threads, "median_s": round(step, 3),
                          "cpu_s": round(step_cpu, 3)}), flush=True)


if __name__ == "__main__":
    main()
