#!/usr/bin/env python3
"""OpenCV Canny references for tests/control/test_preprocess.cpp (Canny.MatchesOpenCV).

Writes tests/data/control/:
  canny_in_<k>.png                 input images: 0 = shapes on a gradient (RGB), 1 = smooth noise + texture (RGB),
                                   2 = a grey-scale ramp with circles (saved as RGB with equal channels)
  canny_<k>_<low>_<high>.png       cv2.Canny(rgb, low, high) (apertureSize 3, L2gradient False), as
                                   sd-webui-controlnet's canny module calls it on the RGB image
  info.json                        OpenCV version and the list of cases

Run: /tmp/samplers-venv/bin/pip install opencv-python-headless; /tmp/samplers-venv/bin/python tools/make_canny_reference.py
"""
import json
import os

import cv2
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/data/control")
THRESHOLDS = [(100, 200), (50, 100), (20, 60), (200, 100)]


def images():
    rng = np.random.default_rng(7)
    a = np.zeros((64, 96, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, 96)[None, :]
    a[..., 1] = np.linspace(255, 0, 64)[:, None]
    cv2.rectangle(a, (10, 8), (40, 30), (255, 255, 255), -1)
    cv2.circle(a, (66, 38), 17, (0, 0, 0), -1)
    cv2.line(a, (0, 63), (95, 0), (20, 220, 90), 3)
    small = rng.uniform(0, 255, (12, 16, 3)).astype(np.float32)
    b = cv2.resize(small, (128, 96), interpolation=cv2.INTER_CUBIC)
    b = np.clip(b + rng.normal(0, 12, b.shape), 0, 255).astype(np.uint8)
    g = np.tile(np.linspace(30, 220, 80, dtype=np.float32)[None, :], (72, 1))
    for cx, cy, r in [(20, 20, 10), (50, 40, 15), (70, 60, 6)]:
        yy, xx = np.mgrid[:72, :80]
        g[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 255 - g[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r]
    c = np.repeat(g.astype(np.uint8)[..., None], 3, axis=2)
    return [a, b, c]


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for k, img in enumerate(images()):
        Image.fromarray(img, "RGB").save(os.path.join(OUT, f"canny_in_{k}.png"))
        for lo, hi in THRESHOLDS:
            e = cv2.Canny(img, lo, hi)
            name = f"canny_{k}_{lo}_{hi}.png"
            Image.fromarray(e, "L").save(os.path.join(OUT, name))
            cases.append({"input": f"canny_in_{k}.png", "low": lo, "high": hi, "expected": name,
                          "edge_pixels": int((e > 0).sum())})
    json.dump({"opencv": cv2.__version__, "cases": cases}, open(os.path.join(OUT, "info.json"), "w"), indent=1)
    for c in cases:
        print(c)


if __name__ == "__main__":
    main()
