#!/usr/bin/env python3
"""Reference blocks for nuance's quantizers (tests/io/test_gguf_quantize.cpp): random f32 rows quantized by gguf-py's
quants.quantize (pip install gguf; 0.19.0 was used), written with its GGUFWriter to
tests/data/gguf_quant/ref.gguf: tensor 'src' (F32 [8, 512]) and one tensor per type holding gguf-py's bytes of it.

    /tmp/samplers-venv/bin/python tools/make_gguf_quant_ref.py
"""
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "gguf_quant", "ref.gguf")

rng = np.random.default_rng(14)
src = rng.standard_normal((8, 512)).astype(np.float32)
src[1] *= 1e-3                                        # small values (f16 subnormal scales)
src[2] *= 300                                         # large
src[3, :64] = 0                                       # all-zero blocks (d = 0)
src[4, :32] = 0.25; src[4, 5] = -1.0                  # constant block with one outlier
src[5] = np.round(src[5] * 4) / 4                     # many exact ties (x * id + 0.5 on integers)
src[6, 32:64] = np.linspace(-1, 1, 32, dtype=np.float32)
src[7] = rng.standard_t(2, 512).astype(np.float32)    # heavy tail

w = gguf.GGUFWriter(OUT, "test")
w.add_string("general.description", "gguf-py %s quants.quantize reference (tools/make_gguf_quant_ref.py)"
             % getattr(gguf, "__version__", "0.19.0"))
w.add_tensor("src", src)
for t in [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]:
    q = gguf.quants.quantize(src, t)
    w.add_tensor(t.name.lower(), q, raw_dtype=None if t == T.F16 else t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", OUT, os.path.getsize(OUT), "bytes")
