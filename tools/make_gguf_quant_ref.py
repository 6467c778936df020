#!/usr/bin/env python3
"""Reference blocks for nuance's quantizers (tests/io/test_gguf_quantize.cpp): random f32 rows quantized by gguf-py's
quants.quantize (pip install gguf; 0.19.0 was used), written with its GGUFWriter to
tests/data/gguf_quant/ref.gguf: tensor 'src' (F32 [8, 512]) and one tensor per type holding gguf-py's bytes of it;
and for the dequantizers of types the golden case lacks (IQ4_NL, IQ4_XS) plus every K type: 'deq.<type>' random blocks
(f16 scales kept finite) and 'deq.<type>.f32' their gguf-py quants.dequantize.

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
for t in [T.IQ4_NL, T.IQ4_XS, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
    block, size = gguf.GGML_QUANT_SIZES[t]
    n_blocks = 4 * 256 // block
    raw = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    raw[:, 1::2] &= 0x3F  # every 16-bit word a finite f16 (where the scales live) -- the rest stays random
    w.add_tensor("deq.%s" % t.name.lower(), raw.reshape(4, -1), raw_dtype=t)
    w.add_tensor("deq.%s.f32" % t.name.lower(), gguf.quants.dequantize(raw.reshape(4, -1), t).astype(np.float32))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", OUT, os.path.getsize(OUT), "bytes")
