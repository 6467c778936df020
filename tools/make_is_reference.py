"""Reference for nuance's Inception Score (tests/eval/test_inception_score.cpp): torchmetrics' InceptionScore on
pytorch-fid's FID Inception v3 with the random weights of the fid_inception golden case plus a random fc head
(1008 classes, as pt_inception-2015-12-05 has), fed as torchmetrics' `feature` module.

    /tmp/samplers-venv/bin/pip install torchmetrics pytorch-fid safetensors
    /tmp/samplers-venv/bin/python tools/make_is_reference.py tests/data/golden/fid_inception tests/data/eval/is_reference

Writes OUT/fc.safetensors (fc.weight [1008, 2048], fc.bias [1008], F16-representable values stored F16),
OUT/images/NNN.png (20 seeded random images of mixed sizes), OUT/logits.safetensors (the logits_unbiased features,
F32 [20, 1008]) and OUT/reference.json (IS mean/std from torchmetrics in float32 with its shuffle replaced by the
identity, as nuance keeps the images' order; and the same in float64).
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import pytorch_fid.inception as pfi
from torchmetrics.image.inception import InceptionScore


def main():
    golden, out = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(os.path.join(golden, "inception.safetensors")).items()}
    g = torch.Generator().manual_seed(1234)
    # (Random weights give nearly the same pool3 for every image, so the IS is close to 1; a larger head would
    # underflow float32 softmaxes. The arithmetic is checked here; tests add hand-made logits for larger scores.)
    fc_w = (torch.randn(1008, 2048, generator=g) * 0.5).half()
    fc_b = (torch.randn(1008, generator=g) * 0.1).half()
    save_file({"fc.weight": fc_w.contiguous(), "fc.bias": fc_b.contiguous()}, os.path.join(out, "fc.safetensors"))
    sd["fc.weight"], sd["fc.bias"] = fc_w.float(), fc_b.float()
    pfi.load_state_dict_from_url = lambda *a, **k: sd  # fid_inception_v3() loads these instead of downloading
    net = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    W, B = fc_w.float(), fc_b.float()

    class Logits(torch.nn.Module):  # torch-fidelity's 'logits_unbiased': pool3 @ fc.weight^T (no bias)
        def forward(self, imgs):
            x = imgs.float() / 255.0
            with torch.no_grad():
                pool3 = net(x)[0].flatten(1)
            return pool3 @ W.T

    rng = np.random.RandomState(7)
    imgs = []
    for i in range(20):
        h, w = [(48, 48), (40, 64), (80, 56), (299, 299)][i % 4]
        base = rng.randint(0, 256, size=(1, 1, 3)).astype(np.float32)
        a = np.clip(base + rng.randint(-60, 60, size=(h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(os.path.join(out, "images", f"{i:03d}.png"))
        imgs.append(torch.from_numpy(a).permute(2, 0, 1)[None])
    feats = torch.cat([Logits()(im) for im in imgs])
    save_file({"logits_unbiased": feats.contiguous()}, os.path.join(out, "logits.safetensors"))

    ref = {}
    for splits in (10, 3, 1):
        # torchmetrics' own compute() on these features (identity feature module: update() gets the logits), its
        # torch.randperm shuffle replaced by the identity, as nuance keeps the order.
        m = InceptionScore(feature=torch.nn.Identity(), splits=splits)
        m.update(feats)
        saved, torch.randperm = torch.randperm, lambda n, *a, **k: torch.arange(n)
        mean, std = m.compute()
        torch.randperm = saved
        f = feats.double()
        p, lp = f.softmax(1).chunk(splits), f.log_softmax(1).chunk(splits)
        kl = torch.stack([(pp * (lpp - pp.mean(0, keepdim=True).log())).sum(1).mean().exp() for pp, lpp in zip(p, lp)])
        ref[f"splits_{splits}"] = {"torchmetrics_f32": [float(mean), float(std) if splits > 1 else None],
                                   "float64": [float(kl.mean()), float(kl.std()) if len(kl) > 1 else None]}
    ref["note"] = ("torchmetrics InceptionScore(feature=Identity, splits=N) on the Logits() features, torch.randperm = arange; images "
                   "read as uint8 HWC PNG, x = u8/255, pytorch-fid resize (legacy_pytorch) and 2x-1")
    json.dump(ref, open(os.path.join(out, "reference.json"), "w"), indent=1)
    print(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main()
