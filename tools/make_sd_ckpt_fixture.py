#!/usr/bin/python3
"""Writes tests/data/ckpt/sd15_original.ckpt: the golden tiny SD1.5 single-file checkpoint re-saved the way
real A1111-era .ckpt files are (torch.save zip, {"state_dict": ..., "global_step": ...}).
Needs Debian's python3-torch (run with /usr/bin/python3); the tests only read the result."""
import json, struct, sys
import numpy as np
import torch

src = sys.argv[1] if len(sys.argv) > 1 else "tests/data/golden/original_format/sd15_original.safetensors"
dst = sys.argv[2] if len(sys.argv) > 2 else "tests/data/ckpt/sd15_original.ckpt"
with open(src, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
dtypes = {"F16": np.float16, "F32": np.float32, "I64": np.int64}
sd = {}
for k, v in header.items():
    if k == "__metadata__":
        continue
    b, e = v["data_offsets"]
    arr = np.frombuffer(data[b:e], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    sd[k] = torch.from_numpy(arr.copy())
sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
torch.save({"state_dict": sd, "global_step": 470000, "epoch": 6}, dst)
print(dst, len(sd), "tensors")
