#!/usr/bin/env python3
"""Writes tests/data/dit/dit_pipeline_io.safetensors: DiTPipeline's sampling loop on the tiny golden DiT and VAE.

diffusers' DiTPipeline.__call__ (0.31) hard-codes the null class 1000, which the tiny golden DiT (10 classes) does
not have, so its loop is run here line for line with null = num_classes; everything else is the pipeline's:
one randn_tensor draw (torch.manual_seed(0), CPU), batch doubled with [labels, null], guidance on eps = out[:, :C],
the learned-variance channels dropped before scheduler.step, the first half kept, VAE decode of latents / 0.18215,
(x / 2 + 0.5).clamp(0, 1). Scheduler: DDIMScheduler with DiT's training betas (linear 1e-4 .. 0.02, 1000),
clip_sample=False, set_alpha_to_one=False, steps_offset=0 (leading spacing), eta 0.

Outputs: noise [2,4,8,8], latents (g = 4, 5 steps), image, latents_nocfg (g = 1, 5 steps), labels [3, 7].
Run: /tmp/samplers-venv/bin/python tools/make_dit_pipeline_ref.py   (torch, diffusers 0.31, safetensors)
"""
import json
import os

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def model(case, name, cls):
    meta = json.load(open(os.path.join(DATA, "golden", case, "case.json")))["models"][name]
    cfg = {k: v for k, v in meta["config"].items() if not k.startswith("_")}
    m = cls(**cfg)
    m.load_state_dict(load_file(os.path.join(DATA, "golden", case, meta["weights"])))
    return m.eval()


def sample(dit, labels, guidance_scale, steps):
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=0)
    generator = torch.manual_seed(0)
    batch_size = len(labels)
    latent_size = dit.config.sample_size
    latent_channels = dit.config.in_channels
    latents = randn_tensor((batch_size, latent_channels, latent_size, latent_size), generator=generator,
                           dtype=torch.float32)
    noise = latents.clone()
    latent_model_input = torch.cat([latents] * 2) if guidance_scale > 1 else latents
    class_labels = torch.tensor(labels).reshape(-1)
    class_null = torch.tensor([dit.config.num_embeds_ada_norm] * batch_size)
    class_labels_input = torch.cat([class_labels, class_null], 0) if guidance_scale > 1 else class_labels
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        if guidance_scale > 1:
            half = latent_model_input[: len(latent_model_input) // 2]
            latent_model_input = torch.cat([half, half], dim=0)
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        timesteps = t[None].expand(latent_model_input.shape[0])
        noise_pred = dit(latent_model_input, timestep=timesteps, class_labels=class_labels_input).sample
        if guidance_scale > 1:
            eps, rest = noise_pred[:, :latent_channels], noise_pred[:, latent_channels:]
            cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
            half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
            eps = torch.cat([half_eps, half_eps], dim=0)
            noise_pred = torch.cat([eps, rest], dim=1)
        if dit.config.out_channels // 2 == latent_channels:
            model_output, _ = torch.split(noise_pred, latent_channels, dim=1)
        else:
            model_output = noise_pred
        latent_model_input = scheduler.step(model_output, t, latent_model_input).prev_sample
    latents = latent_model_input.chunk(2, dim=0)[0] if guidance_scale > 1 else latent_model_input
    return noise, latents


def main():
    dit = model("dit", "dit", DiTTransformer2DModel)
    vae = model("vae", "vae_sd", AutoencoderKL)
    labels = [3, 7]
    with torch.no_grad():
        noise, latents = sample(dit, labels, 4.0, 5)
        _, latents_nocfg = sample(dit, labels, 1.0, 5)
        image = (vae.decode(latents / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    save_file({"noise": noise.contiguous(), "latents": latents.contiguous(), "image": image.contiguous(),
               "latents_nocfg": latents_nocfg.contiguous(), "labels": torch.tensor(labels)},
              os.path.join(DATA, "dit", "dit_pipeline_io.safetensors"))
    print("latents", latents.abs().max().item(), "image", tuple(image.shape), image.mean().item())


if __name__ == "__main__":
    main()
