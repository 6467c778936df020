#!/usr/bin/env python3
# Usage: gguf_py_roundtrip.py SOURCE.safetensors OUT.gguf... (venv: pip install gguf numpy safetensors)
# gguf-py reads nuance's K-quant GGUF files and dequantizes every tensor; compare with the f32 source.
import sys
import numpy as np
import gguf
from gguf import GGUFReader, quants
from safetensors.numpy import load_file

src = load_file(sys.argv[1])
for path in sys.argv[2:]:
    r = GGUFReader(path)
    orig = {}
    for f in r.fields.values():
        if f.name.startswith("comfy.gguf.orig_shape."):
            orig[f.name[len("comfy.gguf.orig_shape."):]] = [int(f.parts[i][0]) for i in f.data]
    per_type = {}
    for t in r.tensors:
        deq = quants.dequantize(t.data, t.tensor_type)
        shape = orig.get(t.name, list(reversed([int(x) for x in t.shape])))
        want = src[t.name].astype(np.float32)
        got = deq.reshape(shape)
        err = np.abs(got - want)
        k = t.tensor_type.name
        m, s, n = per_type.get(k, (0.0, 0.0, 0))
        per_type[k] = (max(m, float(err.max())), s + float(err.sum()), n + err.size)
    print(path, {k: f"n={n} max={m:.4g} mean={s / n:.3g}" for k, (m, s, n) in sorted(per_type.items())})
