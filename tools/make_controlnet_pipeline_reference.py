#!/usr/bin/env python3
"""diffusers StableDiffusionControlNetPipeline reference for tests/models/controlnet/test_controlnet_pipeline.cpp.

Uses the tiny golden components (unet_sd15, vae_sd, the controlnet case's ControlNet, which was made with
ControlNetModel.from_unet(unet_sd15)) and the pipeline_sd15 case's prompt embeddings and initial latents, so the C++
side runs the same prompts through its own tokenizer and CLIP (pipeline_sd15 checks those against the reference).

Writes tests/data/controlnet_pipeline/:
  control.png       a 96x64 RGB conditioning image (shapes on a gradient), PNG
  control_inv.png   its inverse (255 - x), the second unit's image
  ref.safetensors   <case>.latents_final [1,4,8,12] (output_type="latent", 6 steps, CFG 7.5) for the cases:
    single_euler    one ControlNet, conditioning scale 0.8, EulerDiscrete
    multi_euler     two ControlNets (the same weights; control.png at 0.6 active in [0, 0.7], control_inv.png at 0.9
                    active in [0.3, 1]), EulerDiscrete
    guess_ddim      one ControlNet, guess_mode=True, scale 1.0, DDIM
  and the same for "plain_euler" (no ControlNet: the pipeline_sd15 Euler run) as a sanity anchor.

Run with the samplers venv: /tmp/samplers-venv/bin/python tools/make_controlnet_pipeline_reference.py
GOLDEN=/path/to/golden overrides the golden folder (default: tests/data/golden).
"""
import json
import os

import transformers.utils as tu

tu.FLAX_WEIGHTS_NAME = getattr(tu, "FLAX_WEIGHTS_NAME", "flax_model.msgpack")  # diffusers 0.31 imports it

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, EulerDiscreteScheduler,  # noqa: E402
                       StableDiffusionControlNetPipeline, UNet2DConditionModel)
from diffusers.pipelines.controlnet import MultiControlNetModel  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.environ.get("GOLDEN", os.path.join(ROOT, "tests/data/golden"))
OUT = os.path.join(ROOT, "tests/data/controlnet_pipeline")


def case(name):
    return json.load(open(os.path.join(GOLDEN, name, "case.json")))


def model(cls, case_name, model_name, weights):
    cfg = {k: v for k, v in case(case_name)["models"][model_name]["config"].items() if not k.startswith("_")}
    m = cls.from_config(cfg)
    m.load_state_dict(load_file(os.path.join(GOLDEN, case_name, weights)))
    return m.eval()


def control_image():
    w, h = 96, 64
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    x[..., 1] = np.linspace(255, 0, h)[:, None]
    img = Image.fromarray(x.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle([10, 8, 40, 30], fill=(255, 255, 255))
    d.ellipse([50, 20, 85, 55], fill=(0, 0, 0), outline=(200, 30, 60))
    d.line([0, 63, 95, 0], fill=(20, 220, 90), width=3)
    return img


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    unet = model(UNet2DConditionModel, "unet_sd15", "unet_sd15", "unet.safetensors")
    vae = model(AutoencoderKL, "vae", "vae_sd", "vae_sd.safetensors")
    cn = model(ControlNetModel, "controlnet", "controlnet", "controlnet.safetensors")
    p15 = case("pipeline_sd15")
    io = load_file(os.path.join(GOLDEN, "pipeline_sd15", "io.safetensors"))
    img = control_image()
    inv = Image.fromarray(255 - np.asarray(img), "RGB")
    img.save(os.path.join(OUT, "control.png"))
    inv.save(os.path.join(OUT, "control_inv.png"))

    def sched(kind):
        c = {k: v for k, v in p15[kind + "_scheduler"]["config"].items() if not k.startswith("_")}
        return (DDIMScheduler if kind == "ddim" else EulerDiscreteScheduler).from_config(c)

    def run(kind, controlnet, image, **kw):
        pipe = StableDiffusionControlNetPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet,
                                                 controlnet=controlnet, scheduler=sched(kind), safety_checker=None,
                                                 feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():
            out = pipe(prompt_embeds=io["prompt_embeds"], negative_prompt_embeds=io["negative_prompt_embeds"],
                       image=image, height=64, width=96, num_inference_steps=p15["num_inference_steps"],
                       guidance_scale=p15["guidance_scale"], latents=io["latents_init"].clone(), output_type="latent",
                       **kw)
        return out.images

    ref = {
        "plain_euler.latents_final": run("euler", cn, img, controlnet_conditioning_scale=0.0),
        "single_euler.latents_final": run("euler", cn, img, controlnet_conditioning_scale=0.8),
        "multi_euler.latents_final": run("euler", MultiControlNetModel([cn, cn]), [img, inv],
                                         controlnet_conditioning_scale=[0.6, 0.9],
                                         control_guidance_start=[0.0, 0.3], control_guidance_end=[0.7, 1.0]),
        "guess_ddim.latents_final": run("ddim", cn, img, controlnet_conditioning_scale=1.0, guess_mode=True),
    }
    ref = {k: v.contiguous().float() for k, v in ref.items()}
    save_file(ref, os.path.join(OUT, "ref.safetensors"))
    for k, v in ref.items():
        print(k, tuple(v.shape), float(v.abs().max()))
    d = (ref["single_euler.latents_final"] - ref["plain_euler.latents_final"]).abs().max()
    print("control changes the latents by", float(d))


if __name__ == "__main__":
    main()
