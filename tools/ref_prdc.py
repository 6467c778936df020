#!/usr/bin/env python3
"""Reference precision/recall/density/coverage for tests/eval/test_precision_recall.cpp.

The authors' formulas (Kynkaenniemi et al. 2019, NVlabs/improved-precision-recall-metric: radii = distance to the
k-th nearest neighbour in the own set, itself excluded; a sample is inside a ball when d <= radius) and Naeem et
al. 2020's density/coverage, in numpy float64 with exact Euclidean distances. When the `prdc` package (PyPI) is
installed its compute_prdc (strict '<', sklearn distances) is run too and must agree on these tie-free features.

    python3 tools/ref_prdc.py tests/data/eval/prdc_case.safetensors

writes real/fake features (float32, seeded) and the expected values for k = 1, 3, 5 into one safetensors file
(tensors real [N, D], fake [M, D], expected [len(ks), 5] = k, precision, recall, density, coverage in float64).
"""
import sys

import numpy as np


def prdc_authors(real, fake, k):
    real = real.astype(np.float64)
    fake = fake.astype(np.float64)

    def pdist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    rr = np.sort(pdist(real, real), axis=1)[:, k]  # index 0 is the point itself
    rf = np.sort(pdist(fake, fake), axis=1)[:, k]
    d = pdist(real, fake)  # [N, M]
    precision = (d <= rr[:, None]).any(axis=0).mean()
    recall = (d <= rf[None, :]).any(axis=1).mean()
    density = (d <= rr[:, None]).sum(axis=0).mean() / k
    coverage = (d.min(axis=1) <= rr).mean()
    return [float(k), precision, recall, density, coverage]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/eval/prdc_case.safetensors"
    rng = np.random.default_rng(20191202)
    # two overlapping Gaussian clouds of different spread, 16-dim: precision, recall, density, coverage all
    # strictly between 0 and 1
    real = rng.standard_normal((120, 16)).astype(np.float32)
    fake = (0.7 * rng.standard_normal((90, 16)) + 0.4).astype(np.float32)
    ks = [1, 3, 5]
    expected = np.array([prdc_authors(real, fake, k) for k in ks], dtype=np.float64)
    try:
        import prdc

        for row, k in zip(expected, ks):
            p = prdc.compute_prdc(real, fake, k)
            got = [p["precision"], p["recall"], p["density"], p["coverage"]]
            assert np.allclose(got, row[1:], atol=1e-12, rtol=0), (k, got, row)
        print("prdc package agrees")
    except ImportError:
        print("prdc package not installed; authors' formulas only")
    from safetensors.numpy import save_file

    save_file({"real": real, "fake": fake, "expected": expected}, out)
    for row in expected:
        print("k=%d precision=%.17g recall=%.17g density=%.17g coverage=%.17g" % tuple(row))


if __name__ == "__main__":
    main()
