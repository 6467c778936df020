#!/usr/bin/env python3
"""Markdown side-by-side table from tools/bench_side_by_side.sh's results.jsonl (nuance and diffusers lines).

Usage: python3 tools/bench_table.py OUT/results.jsonl [OUT/nu_flux_blocks.out]
Rows: workload; columns: nuance fp32 / bf16, diffusers fp32 / bf16 (autocast; T5: bf16 weights), each the median
seconds (and the run's process CPU seconds, cpu_s, where reported) with the command's peak RSS (time -v) and load
average; then the ratio best-diffusers / best-nuance, of CPU seconds when both sides have them, else of wall time.
The Flux step is 19 double + 38 single blocks from the block medians on both sides (nuance_bench_ops console lines).
"""
import json
import re
import sys
from collections import defaultdict


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    cell = defaultdict(dict)  # workload -> (impl, dtype) -> (seconds, rss_mb, load, cpu_s)

    def put(work, impl, dtype, s, r):
        cell[work][(impl, dtype)] = (s, r.get("time_v_rss_mb"), r.get("load_avg", "").split(" ")[0], r.get("cpu_s"))

    for r in rows:
        impl, part, dt = r.get("impl", "diffusers"), r["part"], r.get("dtype")
        if impl == "nuance":
            fam = r.get("variant", r.get("family"))
            if part == "denoise_step":
                put(f"{fam} step {r['res']}² (batch {r['batch']})", impl, dt, r["median_s"], r)
            elif part == "vae_decode" and r.get("family") == "sd3":
                put(f"VAE decode 16-ch {r['res']}²", impl, dt, r["median_s"], r)
            elif part == "t5_encode":
                put(f"T5-XXL encode {r['tokens']} tokens", impl, dt, r["median_s"], r)
        else:
            m = r["model"]
            name = {"sd35m": "sd3.5-medium", "dit": "dit", "vae16": "VAE", "t5": "T5", "flux": "flux"}[m]
            dt = "bf16" if dt in ("bf16", "bf16w") else dt
            if part == "transformer_step" and m == "sd35m":
                put(f"sd3.5-medium step {r['res']}² (batch 2)", "diffusers", dt, r["median_s"], r)
            elif part == "transformer_step" and m == "dit":
                put(f"DiT step {r['res']}² (batch 2)", "diffusers", dt, r["median_s"], r)
            elif part == "vae_decode":
                put(f"VAE decode 16-ch {r['res']}²", "diffusers", dt, r["median_s"], r)
            elif part == "t5_encode":
                put(f"T5-XXL encode {r['tokens']} tokens", "diffusers", dt, r["median_s"], r)
            elif part.startswith("step_extrapolated"):
                put(f"Flux step {r['res']}² (19 double + 38 single blocks)", "diffusers", dt, r["median_s"], r)
    if len(sys.argv) > 2:  # nuance_bench_ops: flux_double_block/512/bf16  <time> ms ...
        blocks = {}
        for line in open(sys.argv[2]):
            m = re.match(r"(flux_(double|single)_block)/(\d+)/(\w+)\S*\s+([\d.]+) (ms|s|us)", line)
            if m:
                t = float(m.group(5)) * {"ms": 1e-3, "s": 1.0, "us": 1e-6}[m.group(6)]
                blocks[(m.group(2), m.group(3), "fp32" if m.group(4) in ("f32", "fp32") else "bf16")] = t
        for (kind, res, dt), t in blocks.items():
            if kind == "double" and ("single", res, dt) in blocks:
                s = 19 * t + 38 * blocks[("single", res, dt)]
                cell[f"Flux step {res}² (19 double + 38 single blocks)"][("nuance", dt)] = (round(s, 2), None, "", None)
    print("| workload | nuance fp32 | nuance bf16 | diffusers fp32 | diffusers bf16 | best diffusers / best nuance |")
    print("|---|---|---|---|---|---|")
    for work in sorted(cell):
        c = cell[work]

        def fmt(key):
            if key not in c:
                return ""
            s, rss, la, cpu = c[key]
            extra = ", ".join(x for x in ((f"{cpu:.1f} CPU s" if cpu else ""), (f"{rss / 1024:.1f} GiB" if rss else ""),
                                          (f"load {la}" if la else "")) if x)
            return f"{s:.2f} s" + (f" ({extra})" if extra else "")

        keys_nu = [k for k in (("nuance", "fp32"), ("nuance", "bf16")) if k in c]
        keys_py = [k for k in (("diffusers", "fp32"), ("diffusers", "bf16")) if k in c]
        use_cpu = all(c[k][3] for k in keys_nu + keys_py)
        nu = [c[k][3 if use_cpu else 0] for k in keys_nu]
        py = [c[k][3 if use_cpu else 0] for k in keys_py]
        ratio = f"{min(py) / min(nu):.2f}x ({'CPU' if use_cpu else 'wall'})" if nu and py else ""
        print(f"| {work} | {fmt(('nuance', 'fp32'))} | {fmt(('nuance', 'bf16'))} | {fmt(('diffusers', 'fp32'))} | "
              f"{fmt(('diffusers', 'bf16'))} | {ratio} |")


if __name__ == "__main__":
    main()
