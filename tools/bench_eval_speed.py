#!/usr/bin/env python3
"""LPIPS pairs/s and CLIP image embeddings/s: nuance vs torch, same machine, same thread count, one run.

    python3 tools/bench_eval_speed.py --nuance build/nuance --threads 2 [--pairs 32] [--images 16]

Both sides run end to end on the same PNG files (decode, preprocessing, network):
  * LPIPS (alex and vgg): `nuance eval lpips A B --net N --weights W` vs the lpips package (lpips.LPIPS(net=N)
    with the same random weights, images loaded with PIL and lpips.im2tensor, one pair per forward).
  * CLIP image embeddings, ViT-L/14 shape (random weights, quick_gelu, 224): `nuance eval clip-score` (its image
    side dominates; the text side is also timed separately and subtracted out by running with 1 image) vs
    transformers CLIPModel.get_image_features behind CLIPImageProcessor, batch 8.
Random weights: the real ones are not downloadable here; speed does not depend on the values.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np


def sh(cmd, env):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nuance", default="build/nuance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--skip-clip", action="store_true")
    a = ap.parse_args()
    import torch
    from PIL import Image

    torch.set_num_threads(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    tmp = tempfile.mkdtemp(prefix="nuance_bench_eval_")
    rng = np.random.default_rng(0)
    da, db = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    os.makedirs(da)
    os.makedirs(db)
    for i in range(a.pairs):
        x = rng.integers(0, 256, (a.size, a.size, 3), dtype=np.uint8)
        y = np.clip(x.astype(int) + rng.integers(-30, 30, x.shape), 0, 255).astype(np.uint8)
        Image.fromarray(x).save(os.path.join(da, "%04d.png" % i))
        Image.fromarray(y).save(os.path.join(db, "%04d.png" % i))
    results = {"threads": a.threads, "torch": torch.__version__}

    import lpips
    from safetensors.torch import save_file

    names = sorted(os.listdir(da))
    for net in ["alex", "vgg"]:
        m = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
        sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.startswith("lins.")}
        wpath = os.path.join(tmp, "lpips_%s.safetensors" % net)
        save_file(sd, wpath)
        # torch, end to end
        t = time.perf_counter()
        with torch.no_grad():
            for n in names:
                x = lpips.im2tensor(lpips.load_image(os.path.join(da, n)))
                y = lpips.im2tensor(lpips.load_image(os.path.join(db, n)))
                m(x, y)
        t_torch = time.perf_counter() - t
        cmd = [a.nuance, "eval", "lpips", da, db, "--net", net, "--weights", wpath, "-q", "-t", str(a.threads)]
        sh(cmd, env)  # warm the page cache
        t_nu = sh(cmd, env)
        results["lpips_" + net] = {"pairs": a.pairs, "size": a.size, "torch_pairs_per_s": a.pairs / t_torch,
                                   "nuance_pairs_per_s": a.pairs / t_nu, "ratio": t_torch / t_nu}
        print("LPIPS %s %dx%d: torch %.2f pairs/s, nuance %.2f pairs/s (nuance/torch %.2fx; nuance time includes "
              "process start and weight load)" % (net, a.size, a.size, a.pairs / t_torch, a.pairs / t_nu,
                                                 t_torch / t_nu))

    if not a.skip_clip:
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        cfg = CLIPConfig(
            text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             hidden_act="quick_gelu", projection_dim=768),
            vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, patch_size=14, image_size=224, hidden_act="quick_gelu",
                               projection_dim=768),
            projection_dim=768)
        model = CLIPModel(cfg).eval()
        proc = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
        cdir = os.path.join(tmp, "clip")
        model.save_pretrained(cdir, safe_serialization=True)
        proc.save_pretrained(cdir)
        di = os.path.join(tmp, "img")
        os.makedirs(di)
        for i in range(a.images):
            Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(os.path.join(di, "%04d.png" % i))
        with open(os.path.join(tmp, "prompts.txt"), "w") as f:
            f.write("a photo of a cat\n")
        files = sorted(os.listdir(di))
        t = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(files), 8):
                ims = [Image.open(os.path.join(di, n)).convert("RGB") for n in files[i:i + 8]]
                model.get_image_features(**proc(images=ims, return_tensors="pt"))
        t_torch = time.perf_counter() - t
        d1 = os.path.join(tmp, "one")
        os.makedirs(d1)
        os.link(os.path.join(di, files[0]), os.path.join(d1, files[0]))
        base = [a.nuance, "eval", "clip-score", "--prompts", os.path.join(tmp, "prompts.txt"), "--clip", cdir, "-q",
                "-t", str(a.threads)]
        sh(base[:3] + [d1] + base[3:], env)  # warm the page cache
        t_one = sh(base[:3] + [d1] + base[3:], env)  # start + load + 1 image + 1 caption
        t_all = sh(base[:3] + [di] + base[3:], env)
        per_img_nu = (t_all - t_one) / (a.images - 1)
        results["clip_vit_l14"] = {"images": a.images, "torch_images_per_s": a.images / t_torch,
                                   "nuance_images_per_s": 1.0 / per_img_nu, "ratio": (t_torch / a.images) / per_img_nu,
                                   "nuance_total_s": t_all}
        print("CLIP ViT-L/14 image embeddings (400x300 PNG -> 224): torch %.2f images/s, nuance %.2f images/s "
              "(nuance/torch %.2fx; nuance marginal rate = (t(N images) - t(1 image)) / (N - 1), caption "
              "encoding included)" % (a.images / t_torch, 1.0 / per_img_nu, (t_torch / a.images) / per_img_nu))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
