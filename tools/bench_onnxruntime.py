#!/usr/bin/env python3
"""ONNX Runtime and OpenVINO on CPU: the reference side of the README's SD1.5 peer rows ("Speed and memory").

Builds the SD1.5 UNet and VAE decoder from their published configs with random weights (diffusers 0.31, nothing is
downloaded), exports them to ONNX (opset 17, fixed shapes, weights as external data: the fp32 UNet is 3.4 GB, past
protobuf's 2 GB), and times them on the shapes `nuance bench` times: one CFG step (UNet batch 2, latent res/8) and
the VAE decode of one latent.
  --runtime onnxruntime: all graph optimisations, --threads intra-op threads, sequential execution; fp32 only (its CPU
                         provider has no bf16 convolutions).
  --runtime openvino:    the same ONNX file read by OpenVINO's CPU plugin with static shapes, LATENCY hint,
                         --threads inference threads, INFERENCE_PRECISION_HINT = --dtype (bf16 runs its products in
                         bf16 where the CPU has AVX-512 BF16 or AMX; fp32 keeps them in f32).
One JSON line per figure, tools/bench_reference.py's format:
  {"model": "sd15", "part": "unet_step"|"vae_decode", "res": ..., "dtype": "fp32"|"bf16", "median_s": ...,
   "min_s": ..., "runs": ..., "cpu_s": ..., "peak_rss_mb": ..., "impl": "onnxruntime"|"openvino", "version": ...}
peak_rss_mb is the process's peak so far (exports included: run one part per process for a memory figure).

Needs: pip install torch diffusers==0.31.0 onnx onnxruntime openvino (PyPI). Exports are cached in --workdir.
Usage: python tools/bench_onnxruntime.py --res 512 --parts unet,vae --threads 2 --runs 3 --workdir /tmp/ort
       python tools/bench_onnxruntime.py --runtime openvino --dtype bf16 --res 512 --workdir /tmp/ort
Then, the same shapes on nuance: nuance bench -m sd15.safetensors --res 512 --precision fp32 --parts step,vae -t 2
"""
import argparse
import json
import os
import statistics

import numpy as np
import torch

from bench_reference import peak_rss_mb, randomize, timed  # same directory: the shared helpers of the reference side


class UNetStep(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, context):
        return self.unet(sample, timestep, encoder_hidden_states=context, return_dict=False)[0]


class Decoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, z):
        return self.vae.decode(z, return_dict=False)[0]


def export_unet(path, res):
    from diffusers import UNet2DConditionModel
    unet = randomize(UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768, attention_head_dim=8,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3))
    inputs = (torch.randn(2, 4, res // 8, res // 8), torch.tensor([500.0]), torch.randn(2, 77, 768))
    torch.onnx.export(UNetStep(unet), inputs, path, opset_version=17, input_names=["sample", "timestep", "context"],
                      output_names=["eps"], dynamo=False)


def export_vae(path, res):
    from diffusers import AutoencoderKL
    vae = randomize(AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2))
    torch.onnx.export(Decoder(vae), (torch.randn(1, 4, res // 8, res // 8),), path, opset_version=17,
                      input_names=["z"], output_names=["image"], dynamo=False)


def consolidate(path):
    """Rewrites an export with its weights in one external-data file beside it (what ORT loads past 2 GB)."""
    import onnx
    model = onnx.load(path)
    data = os.path.basename(path) + ".data"
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                    size_threshold=1024)


def ort_runner(path, threads, dtype):
    """ONNX Runtime session: returns (run(feed), version)."""
    import onnxruntime as ort
    if dtype != "fp32":
        raise SystemExit("onnxruntime: fp32 only (its CPU provider runs no bf16 convolutions); use --runtime openvino")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return (lambda feed: sess.run(None, feed)), ort.__version__


def openvino_runner(path, threads, dtype):
    """OpenVINO CPU plugin on the ONNX file, shapes as exported (static): returns (run(feed), version)."""
    import openvino as ov
    core = ov.Core()
    if dtype == "bf16":
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in caps:
            raise SystemExit(f"openvino: this CPU offers no bf16 inference ({caps})")
    model = core.read_model(path)
    compiled = core.compile_model(model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32"})
    request = compiled.create_infer_request()
    # the precision the plugin settled on, printed beside the figure (it falls back to f32 without bf16 hardware)
    got = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return (lambda feed: request.infer(feed)), f"{ov.__version__} ({got})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--parts", default="unet,vae")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/ort-sd15")
    ap.add_argument("--runtime", choices=["onnxruntime", "openvino"], default="onnxruntime")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for part in args.parts.split(","):
        path = os.path.join(args.workdir, f"{part}_{args.res}.onnx")
        if not os.path.exists(path):
            (export_unet if part == "unet" else export_vae)(path, args.res)
            consolidate(path)
        run, version = (ort_runner if args.runtime == "onnxruntime" else openvino_runner)(path, args.threads, args.dtype)
        s = args.res // 8
        if part == "unet":
            feed = {"sample": rng.standard_normal((2, 4, s, s), dtype=np.float32),
                    "timestep": np.array([500.0], dtype=np.float32),
                    "context": rng.standard_normal((2, 77, 768), dtype=np.float32)}
            name = "unet_step"
        else:
            feed = {"z": rng.standard_normal((1, 4, s, s), dtype=np.float32)}
            name = "vae_decode"
        walls, cpus = timed(lambda: run(feed), args.runs, args.warmup)
        print(json.dumps({"model": "sd15", "part": name, "res": args.res, "dtype": args.dtype,
                          "threads": args.threads, "median_s": round(statistics.median(walls), 4),
                          "min_s": round(min(walls), 4), "runs": args.runs, "cpu_s": round(statistics.median(cpus), 3),
                          "peak_rss_mb": peak_rss_mb(), "impl": args.runtime, "version": version}), flush=True)
        del run


if __name__ == "__main__":
    main()
