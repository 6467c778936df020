#!/usr/bin/env python3
"""Legacy (pre-1.6) torch.save fixtures for tests/io/test_ckpt_legacy.cpp.

    python3 tools/make_legacy_torch_fixture.py tests/data/ckpt

writes legacy.pth: torch.save(..., _use_new_zipfile_serialization=False) of a small state dict (F32, F16, I64, a
transposed view, two tensors sharing one storage), the format torchvision's alexnet-owt-7be5be79.pth /
vgg16-397923af.pth and the lpips package's weights/v0.1/*.pth use; and copies the lpips package's
weights/v0.1/alex.pth (BSD-2-Clause, richzhang/PerceptualSimilarity) as lpips_v0.1_alex.pth. Prints the values the
test checks.
"""
import os
import shutil
import sys

import torch

out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/ckpt"
base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
sd = {
    "a.weight": base,
    "a.t": base.t(),  # a transposed view of the same storage
    "a.row1": base[1],  # offset view of the same storage
    "h": torch.tensor([0.5, -2.0, 3.25], dtype=torch.float16),
    "ids": torch.tensor([7, -1, 1 << 40], dtype=torch.int64),
    "meta": 3,  # non-tensor entries are ignored
}
torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
import lpips  # noqa: E402

src = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "alex.pth")
shutil.copyfile(src, os.path.join(out, "lpips_v0.1_alex.pth"))
w = torch.load(src, map_location="cpu")
for k, v in w.items():
    print(k, tuple(v.shape), v.dtype, "sum=%.9g" % v.double().sum().item(), "first=%.9g" % v.flatten()[0].item())
