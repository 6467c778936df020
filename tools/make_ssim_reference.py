#!/usr/bin/env python3
"""Reference SSIM / PSNR values for tests/eval/test_image_metrics.cpp (pip install scikit-image; 0.26.0 was used)."""
import numpy as np
from skimage.metrics import structural_similarity, peak_signal_noise_ratio
def img(w, h, f):
    a = np.zeros((h, w, 3), np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                a[y, x, c] = f(x, y, c) % 256
    return a
A = img(32, 24, lambda x, y, c: (x * 7 + y * 3 + c * 50) ^ (x * y))
B = img(32, 24, lambda x, y, c: (x * 7 + y * 3 + c * 50) ^ (x * y) ^ (((x + 2 * y + c) % 5) * 9))
C = img(16, 16, lambda x, y, c: 128 + ((x - 8) * (y - 8) + c * 3))
D = img(16, 16, lambda x, y, c: 40 + 2 * ((x - 8) * (y - 8) + c * 3))
for (p, q, n) in [(A, B, "AB"), (C, D, "CD"), (A, A, "AA")]:
    s = structural_similarity(p, q, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2)
    ps = peak_signal_noise_ratio(p, q, data_range=255) if n != "AA" else float("inf")
    print(n, repr(float(s)), repr(float(ps)))
