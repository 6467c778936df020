# DoRA and LyCORIS Tucker (CP) reference (run once; outputs committed). torch 2.5.1 CPU, peft 0.13.2.
#   python make_reference.py <out dir>
# A tiny "UNet" with blocks.0.proj (Linear 6 -> 8) and conv_in (Conv2d 6 -> 8, 3x3). Files and merged weights:
#   dora_peft:    PEFT LoRA with use_dora=True (r 2, alpha 2 = r: PEFT files carry no alpha) on both layers, saved by peft as a diffusers/PEFT
#                 state dict; merged = peft's own merge_and_unload() (magnitude per OUTPUT row: ||W + s BA||_row)
#   dora_kohya:   kohya / LyCORIS spelling (lora_down/lora_up/alpha/dora_scale [1, in(, 1, 1)]: the norm per INPUT
#                 channel, LyCORIS' default wd_on_out=False); merged with ComfyUI's weight_decompose at strength 0.7:
#                 W + 0.7 * (m * (W + s BA) / (||W + s BA||_in + eps) - W)
#   locon_tucker: LoCon with lora_mid (CP/Tucker conv): delta = einsum("m n ..., i m, n j -> i j ...", mid, up, down)
#   loha_tucker:  LoHa with hada_t1/hada_t2: w = einsum("i j k l, j r, i p -> p r k l", t, w_b, w_a), delta = w1 * w2
#   lokr_tucker:  LoKr with lokr_t2: w2 = einsum("i j k l, i p, j r -> p r k l", t2, w2_a, w2_b), delta = kron(w1, w2)
#   (the last three at strength 0.7 with scale alpha / rank, LyCORIS' formulas, lycoris/functional/*.py)
#   lokr_dora:    LoKr (w1, w2_a, w2_b) on the conv with dora_scale [1, in, 1, 1], ComfyUI's merge at 0.7
import sys, os
import torch
from safetensors.torch import save_file
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(7)
def rnd(*s, scale=0.3):
    return (torch.randn(*s, generator=g) * scale).float()

class Blocks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 8)
class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Blocks()])
        self.conv_in = torch.nn.Conv2d(6, 8, 3, padding=1)

base = Tiny()
with torch.no_grad():
    for p in base.parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
W = {"blocks.0.proj": base.blocks[0].proj.weight.detach().clone(), "conv_in": base.conv_in.weight.detach().clone()}
ref = {f"base.{k}": v for k, v in W.items()}

# --- PEFT DoRA -----------------------------------------------------------------------------------------------
m = Tiny(); m.load_state_dict(base.state_dict())
pm = get_peft_model(m, LoraConfig(r=2, lora_alpha=2, use_dora=True, target_modules=["proj", "conv_in"]))
with torch.no_grad():
    for n, p in pm.named_parameters():
        if "lora_" in n:
            p.add_(rnd(*p.shape))  # B starts at 0 and the magnitude at ||W||: move both
sd = get_peft_model_state_dict(pm)
save_file({k: v.contiguous() for k, v in sd.items()}, f"{out}/dora_peft.safetensors")
merged = pm.merge_and_unload()
ref["dora_peft.blocks.0.proj"] = merged.blocks[0].proj.weight.detach().clone()
ref["dora_peft.conv_in"] = merged.conv_in.weight.detach().clone()
print("peft keys:", sorted(sd.keys()))

# --- kohya / LyCORIS DoRA, ComfyUI's merge at 0.7 ------------------------------------------------------------
S = 0.7
def comfy_dora(w, diff, dora_scale, strength):
    calc = w + diff
    if dora_scale.shape[0] == calc.shape[0]:
        norm = calc.reshape(calc.shape[0], -1).norm(dim=1, keepdim=True).reshape(calc.shape[0], *[1] * (calc.dim() - 1))
    else:
        norm = calc.transpose(0, 1).reshape(calc.shape[1], -1).norm(dim=1, keepdim=True) \
                   .reshape(calc.shape[1], *[1] * (calc.dim() - 1)).transpose(0, 1)
    norm = norm + torch.finfo(w.dtype).eps
    calc = calc * (dora_scale / norm)
    return w + strength * (calc - w)

f = {}
for name, w, r, alpha in (("blocks_0_proj", W["blocks.0.proj"], 2, 1.0), ("conv_in", W["conv_in"], 3, 2.0)):
    conv = w.dim() == 4
    down = rnd(r, 6, 3, 3) if conv else rnd(r, 6)
    up = rnd(8, r, 1, 1) if conv else rnd(8, r)
    ds = (torch.rand(1, 6, 1, 1, generator=g) + 0.5) if conv else (torch.rand(1, 6, generator=g) + 0.5)
    f[f"lora_unet_{name}.lora_down.weight"] = down
    f[f"lora_unet_{name}.lora_up.weight"] = up
    f[f"lora_unet_{name}.alpha"] = torch.tensor(alpha)
    f[f"lora_unet_{name}.dora_scale"] = ds
    diff = (up.reshape(8, r) @ down.reshape(r, -1)).reshape(w.shape) * (alpha / r)
    ref[f"dora_kohya.{name.replace('blocks_0_proj', 'blocks.0.proj')}"] = comfy_dora(w, diff, ds, S)
save_file(f, f"{out}/dora_kohya.safetensors")

# --- Tucker / CP ---------------------------------------------------------------------------------------------
w = W["conv_in"]
r, alpha = 3, 1.5
down, mid, up = rnd(r, 6, 1, 1), rnd(r, r, 3, 3), rnd(8, r, 1, 1)
save_file({"lora_unet_conv_in.lora_down.weight": down, "lora_unet_conv_in.lora_mid.weight": mid,
           "lora_unet_conv_in.lora_up.weight": up, "lora_unet_conv_in.alpha": torch.tensor(alpha)},
          f"{out}/locon_tucker.safetensors")
delta = torch.einsum("m n ..., i m, n j -> i j ...", mid, up.reshape(8, r), down.reshape(r, 6))
ref["locon_tucker.conv_in"] = w + S * (alpha / r) * delta

r, alpha = 2, 1.0
t1, w1a, w1b, t2, w2a, w2b = rnd(r, r, 3, 3), rnd(r, 8), rnd(r, 6), rnd(r, r, 3, 3), rnd(r, 8), rnd(r, 6)
save_file({"lora_unet_conv_in.hada_t1": t1, "lora_unet_conv_in.hada_w1_a": w1a, "lora_unet_conv_in.hada_w1_b": w1b,
           "lora_unet_conv_in.hada_t2": t2, "lora_unet_conv_in.hada_w2_a": w2a, "lora_unet_conv_in.hada_w2_b": w2b,
           "lora_unet_conv_in.alpha": torch.tensor(alpha)}, f"{out}/loha_tucker.safetensors")
rb = lambda t, wa, wb: torch.einsum("i j k l, j r, i p -> p r k l", t, wb, wa)
ref["loha_tucker.conv_in"] = w + S * (alpha / r) * rb(t1, w1a, w1b) * rb(t2, w2a, w2b)

r, alpha = 2, 3.0
w1, t2, w2a, w2b = rnd(2, 2), rnd(r, r, 3, 3), rnd(r, 4), rnd(r, 3)
save_file({"lora_unet_conv_in.lokr_w1": w1, "lora_unet_conv_in.lokr_t2": t2, "lora_unet_conv_in.lokr_w2_a": w2a,
           "lora_unet_conv_in.lokr_w2_b": w2b, "lora_unet_conv_in.alpha": torch.tensor(alpha)},
          f"{out}/lokr_tucker.safetensors")
w2 = torch.einsum("i j k l, i p, j r -> p r k l", t2, w2a, w2b).contiguous()  # [4, 3, 3, 3]
ref["lokr_tucker.conv_in"] = w + S * (alpha / r) * torch.kron(w1.reshape(2, 2, 1, 1), w2)

# LoKr (full w1, decomposed w2 on a 3x3 conv) with a LyCORIS dora_scale [1, in, 1, 1], ComfyUI's merge at 0.7
r, alpha = 2, 2.0
w1, w2a, w2b = rnd(2, 2), rnd(4, r), rnd(r, 3, 3, 3)
ds = torch.rand(1, 6, 1, 1, generator=g) + 0.5
save_file({"lora_unet_conv_in.lokr_w1": w1, "lora_unet_conv_in.lokr_w2_a": w2a, "lora_unet_conv_in.lokr_w2_b": w2b,
           "lora_unet_conv_in.alpha": torch.tensor(alpha), "lora_unet_conv_in.dora_scale": ds},
          f"{out}/lokr_dora.safetensors")
diff = torch.kron(w1.reshape(2, 2, 1, 1), (w2a @ w2b.reshape(r, -1)).reshape(4, 3, 3, 3)) * (alpha / r)
ref["lokr_dora.conv_in"] = comfy_dora(w, diff, ds, S)

save_file({k: v.contiguous().float() for k, v in ref.items()}, f"{out}/reference.safetensors")
print({k: tuple(v.shape) for k, v in ref.items()})
