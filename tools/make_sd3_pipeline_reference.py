#!/usr/bin/env python3
"""Tiny StableDiffusion3Pipeline reference for tests/models/test_sd3_family.cpp (SD3Family.MatchesDiffusersPipeline).

Writes tests/data/sd3_pipeline/:
  tiny/        a diffusers SD3 pipeline folder without tokenizers (nuance uses its built-in CLIP and T5 vocabularies,
               the same ones as below): CLIP-L (8 wide, projection 8), CLIP-G (16, projection 16), T5 (d_model 32,
               1 block), SD3.5-style MMDiT (3 blocks of 32, qk RMSNorm, dual attention in 0-1, context 32, pooled 24),
               a 16-channel VAE (2 levels of 8, no quant convs, scaling 1.5305, shift 0.0609), FlowMatchEuler shift 3.
               Weights are random, rounded to float16 and stored as float16; the pipeline runs in float32.
  io.safetensors  latents_in [1,16,16,16] (the initial noise), prompt_embeds / pooled_prompt_embeds and the negative
               ones (negative prompt ""), latents_out (output_type="latent" after 3 steps, CFG 4.5, 32x32) and
               decoded = vae.decode(latents_out / 1.5305 + 0.0609) before any clamping.

Run with the samplers venv (diffusers 0.31, torch CPU; transformers 5 needs the FLAX_WEIGHTS_NAME shim below):
  /tmp/samplers-venv/bin/python tools/make_sd3_pipeline_reference.py
The T5 tokenizer is the real vocabulary's tokenizer.json from the shared golden case t5_tokenizer_real.
"""
import json
import math
import os
import shutil
import sys

import transformers.utils as tu

tu.FLAX_WEIGHTS_NAME = getattr(tu, "FLAX_WEIGHTS_NAME", "flax_model.msgpack")  # diffusers 0.31 imports it

import torch  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel  # noqa: E402
from diffusers import StableDiffusion3Pipeline  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer,  # noqa: E402
                          PreTrainedTokenizerFast, T5Config, T5EncoderModel)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/data/sd3_pipeline")
T5_TOKENIZER = os.environ.get("T5_TOKENIZER_JSON", "/work/shared/golden/t5_tokenizer_real/tokenizer.json")
PROMPT = "a photograph of an astronaut riding a horse on the moon"


def randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif p.ndim == 1:
                v = 0.1 * torch.randn(p.shape, generator=g)
            else:
                fan_in = p[0].numel()
                v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            p.copy_(v.half().float())  # float16-exact, so the float16 files hold the same numbers


def clip(hidden, seed):
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=hidden)
    m = CLIPTextModelWithProjection(cfg).eval()
    randomize(m, seed)
    return m


def main():
    torch.manual_seed(0)
    clip_l, clip_g = clip(8, 1), clip(16, 2)
    t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=32, d_kv=8, num_heads=4, d_ff=16, num_layers=1,
                                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                                 dense_act_fn="gelu_new", is_gated_act=True)).eval()
    randomize(t5, 3)
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=16, num_layers=3,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=32,
                                        caption_projection_dim=32, pooled_projection_dim=24, out_channels=16,
                                        pos_embed_max_size=24, dual_attention_layers=(0, 1),
                                        qk_norm="rms_norm").eval()
    randomize(transformer, 4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[8, 8], layers_per_block=1,
                        latent_channels=16, norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
                        scaling_factor=1.5305, shift_factor=0.0609).eval()
    randomize(vae, 5)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    vocab, merges = os.path.join(ROOT, "assets/clip/vocab.json"), os.path.join(ROOT, "assets/clip/merges.txt")
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae,
        text_encoder=clip_l, tokenizer=CLIPTokenizer(vocab, merges, model_max_length=77),
        text_encoder_2=clip_g, tokenizer_2=CLIPTokenizer(vocab, merges, pad_token="!", model_max_length=77),
        text_encoder_3=t5, tokenizer_3=PreTrainedTokenizerFast(tokenizer_file=T5_TOKENIZER, pad_token="<pad>",
                                                               eos_token="</s>", unk_token="<unk>",
                                                               model_max_length=512))

    latents_in = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        pe, npe, ppe, nppe = pipe.encode_prompt(PROMPT, None, None, negative_prompt="",
                                                do_classifier_free_guidance=True)
        out = pipe(PROMPT, negative_prompt="", height=32, width=32, num_inference_steps=3, guidance_scale=4.5,
                   latents=latents_in.clone(), output_type="latent").images
        decoded = vae.decode(out / 1.5305 + 0.0609).sample

    tiny = os.path.join(OUT, "tiny")
    shutil.rmtree(tiny, ignore_errors=True)
    os.makedirs(tiny)
    for sub, m in [("text_encoder", clip_l), ("text_encoder_2", clip_g), ("text_encoder_3", t5),
                   ("transformer", transformer), ("vae", vae)]:
        m.to(torch.float16).save_pretrained(os.path.join(tiny, sub), safe_serialization=True)
    scheduler.save_pretrained(os.path.join(tiny, "scheduler"))
    with open(os.path.join(tiny, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.31.0"}, f, indent=1)
    save_file({"latents_in": latents_in.contiguous(), "prompt_embeds": pe.contiguous(),
               "negative_prompt_embeds": npe.contiguous(), "pooled_prompt_embeds": ppe.contiguous(),
               "negative_pooled_prompt_embeds": nppe.contiguous(), "latents_out": out.contiguous(),
               "decoded": decoded.contiguous()}, os.path.join(OUT, "io.safetensors"),
              metadata={"prompt": PROMPT, "negative_prompt": "", "steps": "3", "guidance_scale": "4.5",
                        "size": "32x32"})
    print("wrote", OUT, "latents_out std", float(out.std()), "decoded std", float(decoded.std()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
