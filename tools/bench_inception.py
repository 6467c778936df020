"""Inception v3 feature speed at 299x299: nuance vs torch (CPU) running pytorch-fid's network, side by side.

    /tmp/samplers-venv/bin/pip install pytorch-fid safetensors
    /tmp/samplers-venv/bin/python tools/bench_inception.py --nuance build/nuance \
        --weights tests/data/golden/fid_inception/inception.safetensors --threads 2 --images 32 --batch 16 --rounds 5

Each round times torch (torch.set_num_threads(threads), model(x) on a [batch, 3, 299, 299] tensor in [0, 1], no grad,
all batches of `images`) and then nuance (`nuance eval fid DIR --save-stats` on the same images as PNG files,
-t threads, the network time it reports as network_seconds minus its first batch, which also packs the weights
once per process, as torch's warm-up call is excluded; decoding and resizing excluded). Prints images/s per
round and the medians, and nuance / torch; by wall time, and by the CPU time of the process (all threads: torch's
time.process_time(), nuance's network_cpu_seconds), which a machine shared with other work disturbs far less than
wall time (at --threads 1 there is no barrier spinning in it either).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import pytorch_fid.inception as pfi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nuance", default="build/nuance")
    ap.add_argument("--weights", default="tests/data/golden/fid_inception/inception.safetensors")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precision", default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in load_file(a.weights).items()}
    sd.setdefault("fc.weight", torch.zeros(1008, 2048))
    sd.setdefault("fc.bias", torch.zeros(1008))
    pfi.load_state_dict_from_url = lambda *x, **k: sd
    net = pfi.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, size=(a.images, 299, 299, 3), dtype=np.uint8)
    tmp = tempfile.mkdtemp(prefix="bench_inception_")
    os.makedirs(os.path.join(tmp, "img"))
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(os.path.join(tmp, "img", f"{i:05d}.png"))
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    cmd = [a.nuance, "eval", "fid", os.path.join(tmp, "img"), "--save-stats", os.path.join(tmp, "s.npz"),
           "--inception", a.weights, "-t", str(a.threads), "--batch", str(a.batch), "-q", "--resize",
           "legacy_pytorch", "--precision", a.precision, "--json", os.path.join(tmp, "r.json")]
    with torch.no_grad():
        net(x[: a.batch])  # warm-up
    t_rates, n_rates, tc_rates, nc_rates = [], [], [], []
    for r in range(a.rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for s in range(0, a.images, a.batch):
                net(x[s: s + a.batch])
        t_rates.append(a.images / (time.perf_counter() - t0))
        tc_rates.append(a.images / (time.process_time() - c0))
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        j = json.load(open(os.path.join(tmp, "r.json")))["a"]
        # Batch 0 also packs the weights into oneDNN's layout (once per process): excluded, like torch's warm-up.
        n_rates.append((a.images - a.batch) / (j["network_seconds"] - j["first_batch_seconds"]))
        nc_rates.append((a.images - a.batch) / (j["network_cpu_seconds"] - j["first_batch_cpu_seconds"]))
        print(f"round {r}: wall: torch {t_rates[-1]:.2f} img/s, nuance {n_rates[-1]:.2f} img/s; "
              f"cpu: torch {tc_rates[-1]:.2f} img/cpu-s, nuance {nc_rates[-1]:.2f} img/cpu-s", flush=True)
    tm, nm = statistics.median(t_rates), statistics.median(n_rates)
    tcm, ncm = statistics.median(tc_rates), statistics.median(nc_rates)
    print(f"median wall: torch {tm:.2f} img/s, nuance {nm:.2f} img/s, nuance/torch {nm / tm:.2f}x; "
          f"median cpu: torch {tcm:.2f} img/cpu-s, nuance {ncm:.2f} img/cpu-s, nuance/torch {ncm / tcm:.2f}x "
          f"({a.threads} threads, {a.images} images of 299x299, batch {a.batch}, {a.precision}, "
          f"torch {torch.__version__})")


if __name__ == "__main__":
    main()
