#!/usr/bin/env python3
"""Writes tests/data/golden/scheduler_sweep/: full diffusers 0.31 sampling loops of every scheduler nuance maps, over
step counts (1, 2, 7, 12, 33, 50, 150), timestep spacings (leading, linspace, trailing), prediction types (epsilon,
v_prediction), zero-terminal-SNR where the scheduler supports it, Karras sigmas, eta, several seeds and several
toy models. A reference tool only (never a runtime dependency); the C++ side is src/eval/golden/schedulers_golden.cpp and
tests/samplers/test_sampler_sweep_golden.cpp.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install "torch==2.*" diffusers==0.31.0 safetensors numpy scipy
    /tmp/venv/bin/python tools/make_sampler_sweep_golden.py [OUT_DIR]

Format: the `schedulers` golden case's (see tests/data/golden/README.md), extended per entry with
  "x_init": the name of the starting-noise tensor (several seeds),
  "fake": {"a": A, "b": B}: the toy model out = (A * x_in) * c + B, c = (float32) cos(t / 1000), all float32,
  "nuance_sampler": the nuance sampler this entry checks.
No model_in tensors are stored (size); the number of model calls is "num_model_calls".
Entries the reference itself refuses (e.g. a step count the scheduler cannot do) are listed in "reference_errors".
The output is deterministic for a given torch/diffusers version.
"""
import inspect
import json
import math
import os
import sys

import numpy as np
import torch
import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler,
                       HeunDiscreteScheduler, KDPM2AncestralDiscreteScheduler, KDPM2DiscreteScheduler,
                       LCMScheduler, LMSDiscreteScheduler, PNDMScheduler, TCDScheduler, UniPCMultistepScheduler)
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                                          "data", "golden", "scheduler_sweep")
SHAPE = (1, 1, 3, 4)
SEEDS = [0, 1, 2]
FAKES = [(0.3, 0.05), (0.7, -0.1), (-0.2, 0.3)]
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")



def torch113_linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps, dtype=float32) as torch 1.13's AVX2 CPU kernel computes it (the reference
    env of tests/data/golden/schedulers, which nuance matches bit for bit; see src/samplers/schedule.cpp): the first
    half counts up from start, the second half down from end, 8-lane vectors base + j*step with FMAs. Newer torch
    versions differ in the last bit of some betas, which zero-terminal-SNR rescaling amplifies to 1e-5 in sigma."""
    start, end = np.float32(start), np.float32(end)
    out = np.zeros(steps, np.float32)
    if steps == 1:
        out[0] = start
        return out
    step = np.float32((end - start) / np.float32(steps - 1))
    half = steps // 2

    def fma(a, b, c):  # float32 fma: the product is exact in float64, one rounding of the sum to float32
        return np.float32(np.float64(a) * np.float64(b) + np.float64(c))

    def base(i):
        return fma(step, np.float32(i), start) if i < half else fma(-step, np.float32(steps - i - 1), end)

    i = 0
    while i + 16 <= steps:
        for v in (i, i + 8):
            b = base(v)
            out[v] = b
            for j in range(1, 8):
                out[v + j] = fma(np.float32(j), step, b)
        i += 16
    while i < steps:
        out[i] = base(i)
        i += 1
    return out


_torch_linspace = torch.linspace


def linspace_113(start, end, steps, *args, dtype=None, **kw):
    if dtype == torch.float32 and not args and not kw and isinstance(start, float) and isinstance(end, float):
        return torch.from_numpy(torch113_linspace_f32(start, end, steps))
    return _torch_linspace(start, end, steps, *args, dtype=dtype, **kw)


torch.linspace = linspace_113  # the schedulers build their betas with it


def rescale_zero_terminal_snr_ieee(betas):
    """diffusers' rescale_zero_terminal_snr in float32 with correctly rounded sqrt (numpy; = torch 1.13). torch 2.x's
    vectorised float32 sqrt is off by an ulp on some inputs, and the subtraction of sqrt(alphas_cumprod[T-1]) turns
    that into 1e-5 relative differences of the last sigmas."""
    b = betas.numpy().astype(np.float32)
    ac = np.cumprod((np.float32(1) - b).astype(np.float64)).astype(np.float32)
    s = np.sqrt(ac).astype(np.float32)
    s0, st = s[0], s[-1]
    s = (s - st).astype(np.float32)
    s = (s * np.float32(s0 / np.float32(s0 - st))).astype(np.float32)
    bar = (s * s).astype(np.float32)
    alphas = np.concatenate([bar[:1], (bar[1:] / bar[:-1]).astype(np.float32)])
    return torch.from_numpy((np.float32(1) - alphas).astype(np.float32))


for _mod in list(sys.modules):
    if _mod.startswith("diffusers.schedulers.") and hasattr(sys.modules[_mod], "rescale_zero_terminal_snr"):
        sys.modules[_mod].rescale_zero_terminal_snr = rescale_zero_terminal_snr_ieee

tensors = {}
entries = {}
errors = {}


def accepted(cls):
    return set(inspect.signature(cls.__init__).parameters)


class NoiseTape:
    """Replaces randn_tensor inside a scheduler module: draws from its own seeded generator, records the step."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(1000 + seed)
        self.draws, self.steps, self.step = [], [], 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None, **kw):
        n = torch.randn(shape, generator=self.g, dtype=torch.float32)
        self.draws.append(n.clone())
        self.steps.append(self.step)
        return n.to(dtype) if dtype is not None else n


def fake_model(x_in, t, a, b):
    c = np.float32(math.cos(float(t) / 1000.0))
    return (x_in * np.float32(a)) * torch.tensor(c, dtype=torch.float32) + np.float32(b)


def run(name, sampler, cls, config, steps, seed_i, fake_i, step_kwargs=None, set_kwargs=None):
    step_kwargs = step_kwargs or {}
    set_kwargs = set_kwargs or {}
    ok = accepted(cls)
    cfg = {k: v for k, v in config.items() if k in ok}
    sched = cls(**cfg)
    module = sys.modules[type(sched).__module__]
    tape = NoiseTape(len(entries))
    had = hasattr(module, "randn_tensor")
    if had:
        saved = module.randn_tensor
        module.randn_tensor = tape
    try:
        call_kwargs = {k: (np.array(v) if k == "sigmas" else v) for k, v in set_kwargs.items()}
        sched.set_timesteps(steps, **call_kwargs)
        a, b = FAKES[fake_i]
        init_sigma = getattr(sched, "init_noise_sigma", 1.0)
        x = tensors[f"x_init_s{SEEDS[seed_i]}"] * init_sigma
        xs, calls = [x.clone()], 0
        for i, t in enumerate(sched.timesteps):
            tape.step = i
            x_in = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            out = fake_model(x_in, t, a, b)
            calls += 1
            x = sched.step(out, t, x, **step_kwargs).prev_sample
            xs.append(x.clone())
    except Exception as e:  # the reference refuses this configuration: record it, no entry
        errors[name] = f"{type(e).__name__}: {e}"
        return
    finally:
        if had:
            module.randn_tensor = saved
    X = torch.stack(xs)
    if not torch.isfinite(X).all():
        errors[name] = "reference produced non-finite latents"
        return
    tensors[f"{name}.timesteps"] = sched.timesteps.clone().contiguous()
    if getattr(sched, "sigmas", None) is not None and cls not in (DDIMScheduler, DDPMScheduler, PNDMScheduler,
                                                                   LCMScheduler, TCDScheduler):
        tensors[f"{name}.sigmas"] = sched.sigmas.to(torch.float32).clone().contiguous()
    tensors[f"{name}.x"] = X.contiguous()
    if tape.draws:
        tensors[f"{name}.noise"] = torch.stack(tape.draws).contiguous()
        tensors[f"{name}.noise_step"] = torch.tensor(tape.steps, dtype=torch.int64)
    # JSON has no infinities (lambda_min_clipped = -inf): written as strings
    conf = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in dict(sched.config).items() if not k.startswith("_")}
    entries[name] = {"class": cls.__name__, "config": conf, "num_inference_steps": steps,
                     "set_timesteps_kwargs": set_kwargs, "step_kwargs": step_kwargs,
                     "init_noise_sigma": float(getattr(sched, "init_noise_sigma", 1.0)), "num_model_calls": calls,
                     "noise_draws": len(tape.draws), "x_init": f"x_init_s{SEEDS[seed_i]}",
                     "fake": {"a": FAKES[fake_i][0], "b": FAKES[fake_i][1]}, "nuance_sampler": sampler}


STEPS = [1, 2, 7, 12, 33, 50]
LONG = 150
SPACINGS = ["leading", "linspace", "trailing"]
PREDS = ["epsilon", "v_prediction"]

# (nuance sampler, class, extra config, step kwargs, supports spacing/karras)
SAMPLERS = [
    ("euler", EulerDiscreteScheduler, {}, {}),
    ("euler_a", EulerAncestralDiscreteScheduler, {}, {}),
    ("heun", HeunDiscreteScheduler, {}, {}),
    ("dpm2", KDPM2DiscreteScheduler, {}, {}),
    ("dpm2_a", KDPM2AncestralDiscreteScheduler, {}, {}),
    ("lms", LMSDiscreteScheduler, {}, {}),
    ("ddim", DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": False}, {}),
    ("ddpm", DDPMScheduler, {"clip_sample": False, "variance_type": "fixed_small"}, {}),
    ("plms", PNDMScheduler, {"skip_prk_steps": True, "set_alpha_to_one": False}, {}),
    ("dpmpp_2m", DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, {}),
    ("dpmpp_2m_sde", DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, {}),
    ("dpmpp_2s", DPMSolverSinglestepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}, {}),
    ("unipc", UniPCMultistepScheduler, {"solver_order": 2}, {}),
    ("lcm", LCMScheduler, {"clip_sample": False, "set_alpha_to_one": False}, {}),
    ("tcd", TCDScheduler, {"clip_sample": False, "set_alpha_to_one": False}, {}),
]


def main():
    for s in SEEDS:
        tensors[f"x_init_s{s}"] = torch.randn(SHAPE, generator=torch.Generator().manual_seed(s))
    k = 0
    for sampler, cls, extra, skw in SAMPLERS:
        ok = accepted(cls)
        spacings = SPACINGS if "timestep_spacing" in ok and cls not in (LCMScheduler, TCDScheduler) else [None]
        zsnrs = [False, True] if "rescale_betas_zero_snr" in ok else [False]
        karras = [False, True] if "use_karras_sigmas" in ok else [False]
        steps_list = STEPS + [LONG]
        if cls in (LCMScheduler, TCDScheduler):
            steps_list = [1, 2, 4, 7, 12, 33, 50]
        for pred in PREDS:
            for spacing in spacings:
                for zsnr in zsnrs:
                    if zsnr and (spacing not in (None, "trailing") or pred == "epsilon") and cls is not \
                            EulerDiscreteScheduler:
                        continue  # zero SNR is a v-prediction + trailing configuration (Lin et al. 2023)
                    for kar in karras:
                        if kar and (zsnr or spacing not in (None, "linspace")):
                            continue
                        for steps in steps_list:
                            if steps == LONG and (pred != "epsilon" or kar):
                                continue
                            cfg = dict(SD, prediction_type=pred, **extra)
                            if spacing:
                                cfg["timestep_spacing"] = spacing
                                cfg["steps_offset"] = 1 if spacing == "leading" else 0
                            if zsnr:
                                cfg["rescale_betas_zero_snr"] = True
                            if kar:
                                cfg["use_karras_sigmas"] = True
                            name = "-".join(x for x in [sampler, "v" if pred != "epsilon" else "eps", spacing or "",
                                                         "zsnr" if zsnr else "", "karras" if kar else "",
                                                         f"n{steps}"] if x)
                            run(name, sampler, cls, cfg, steps, k % len(SEEDS), (k // 3) % len(FAKES), dict(skw))
                            k += 1
    # DDIM with eta 1, set_alpha_to_one, linear betas; TCD gamma 0 / 1; DDPM on the linear DDPM schedule.
    for steps in [7, 12, 33]:
        for spacing in SPACINGS:
            cfg = dict(SD, prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False,
                       timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
            run(f"ddim-eps-{spacing}-eta1-n{steps}", "ddim", DDIMScheduler, cfg, steps, k % 3, 0, {"eta": 1.0}); k += 1
            cfg1 = dict(cfg, set_alpha_to_one=True)
            run(f"ddim-eps-{spacing}-alpha1-n{steps}", "ddim", DDIMScheduler, cfg1, steps, k % 3, 1); k += 1
            lin = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                       prediction_type="epsilon", clip_sample=False, timestep_spacing=spacing,
                       steps_offset=1 if spacing == "leading" else 0)
            run(f"ddpm-eps-{spacing}-linear-n{steps}", "ddpm", DDPMScheduler, lin, steps, k % 3, 2); k += 1
        for gamma in [0.0, 1.0]:
            cfg = dict(SD, prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False)
            run(f"tcd-eps-gamma{int(gamma)}-n{steps}", "tcd", TCDScheduler, cfg, steps, k % 3, 0, {"eta": gamma})
            k += 1
    # Flow matching: SD3 (static shift 3 and 1) and Flux (dynamic shift, custom sigmas).
    for steps in [1, 2, 7, 12, 33, 50]:
        for shift in [1.0, 3.0]:
            run(f"flow_euler-shift{int(shift)}-n{steps}", "euler", FlowMatchEulerDiscreteScheduler,
                {"num_train_timesteps": 1000, "shift": shift}, steps, k % 3, 1); k += 1
        sig = list(np.linspace(1.0, 1.0 / steps, steps))
        run(f"flow_euler-flux-n{steps}", "euler", FlowMatchEulerDiscreteScheduler,
            {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": True, "base_shift": 0.5,
             "max_shift": 1.15}, steps, k % 3, 2, {}, {"sigmas": [float(v) for v in sig], "mu": 0.8}); k += 1

    os.makedirs(OUT, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, "io.safetensors"))
    case = {
        "case": "scheduler_sweep",
        "description": "diffusers scheduler loops over step counts, spacings, prediction types, zero SNR, Karras, "
                       "eta, seeds and toy models (tools/make_sampler_sweep_golden.py)",
        "reference": {"diffusers": diffusers.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "fake_model": "out = (a * x_in) * c + b, c = (float32) cos((double)t / 1000), float32 elementwise; "
                      "x_in = scale_model_input(x, t)",
        "loop": "set_timesteps(N, **set_timesteps_kwargs); x = x_init * init_noise_sigma; for t in timesteps: "
                "x = step(fake(scale_model_input(x, t), t), t, x, **step_kwargs).prev_sample; x[k] after k step() "
                "calls; randn_tensor inside step() replaced by <name>.noise[j], drawn during loop index "
                "<name>.noise_step[j]",
        "tolerance": "timesteps/sigmas rtol 1e-6; x atol 1e-5 * max(1, max|x_k|) per recorded latent, except where "
                     "the C++ test states a wider one with its reason",
        "schedulers": entries,
        "reference_errors": errors,
    }
    with open(os.path.join(OUT, "case.json"), "w") as f:
        json.dump(case, f, indent=1, sort_keys=True, allow_nan=False)
    print(f"{len(entries)} entries, {len(errors)} reference errors, "
          f"{os.path.getsize(os.path.join(OUT, 'io.safetensors')) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
