#!/usr/bin/env python3
"""Writes the small torch checkpoints used by tests/io/test_ckpt.cpp into tests/data/ckpt/.

Run once with a python that has torch (Debian: apt-get install python3-torch; /usr/bin/python3):
    /usr/bin/python3 tools/make_ckpt_fixtures.py
The outputs are committed; the tests never need torch. Values are arange-based so the C++ test can
recompute them by hand.
"""
import collections
import os
import sys
import types

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "ckpt")


def plain_state_dict():
    base = torch.arange(20, dtype=torch.float32).reshape(4, 5)
    sd = collections.OrderedDict()
    sd["f32"] = torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1.0
    sd["f16"] = (torch.arange(6, dtype=torch.float32).reshape(3, 2) * 0.25).half()
    sd["bf16"] = (torch.arange(4, dtype=torch.float32) * -1.5).bfloat16()
    sd["i64"] = torch.tensor([1, -2, 3_000_000_000_000], dtype=torch.int64)
    sd["transposed"] = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # [4, 3], strides (1, 4)
    sd["row"] = base[2]              # view with a storage offset of 10, shares storage with "sliced"
    sd["sliced"] = base[:, 1:4]      # [4, 3], strides (5, 1): gapped, must be copied
    sd["scalar"] = torch.tensor(3.5)
    sd["flag"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.full((2, 2), 7.0))
    sd["step"] = 5                   # non-tensor entries are ignored
    sd["name"] = "tiny"
    return sd


class ModelCheckpoint:  # stands in for pytorch_lightning's callback, pickled by reference
    def __init__(self):
        self.best_model_score = torch.tensor(0.25)
        self.best_model_path = "/tmp/last.ckpt"
        self.monitor = None


def install_fake_lightning():
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    ModelCheckpoint.__module__ = names[-1]
    sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned-by-nuance-test",))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.save(plain_state_dict(), os.path.join(OUT, "plain.pt"))

    install_fake_lightning()
    inner = collections.OrderedDict()
    inner["model.diffusion_model.out.weight"] = torch.arange(8, dtype=torch.float16).reshape(2, 4)
    inner["first_stage_model.scale"] = torch.tensor([0.18215])
    nested = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "1.4.2",
        "callbacks": {ModelCheckpoint: {"best": ModelCheckpoint(), "score": np.float64(0.5)}},
        "state_dict": inner,
    }
    torch.save(nested, os.path.join(OUT, "nested.ckpt"))

    torch.save({"w": torch.zeros(2), "payload": Evil()}, os.path.join(OUT, "evil.pt"))
    print("wrote", sorted(os.listdir(OUT)), "with torch", torch.__version__)


if __name__ == "__main__":
    main()
