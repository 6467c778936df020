# Textual-inversion reference (run once; outputs committed). Python: torch 2.5.1 CPU, transformers 4.46.3.
#   python make_reference.py <repo>/tests/data/golden <out dir>
# Embedding files are written with torch.save / safetensors as A1111 and diffusers write them; the conditioning is
# A1111's (sd_hijack_clip.tokenize_line + EmbeddingsWithFixes + emphasis), on the golden tiny CLIP text encoders
# (clip_l: SD1.x and SDXL encoder 1; clip_g: SDXL encoder 2), via transformers' CLIPTextModel with a forward hook on
# the token embedding that writes the vectors in, exactly where A1111's EmbeddingsWithFixes writes them.
import json, os, sys
import torch
from safetensors.torch import save_file, load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

golden, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
tok = CLIPTokenizer(f"{golden}/clip_tokenizer/vocab.json", f"{golden}/clip_tokenizer/merges.txt")
common = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2, vocab_size=49408, intermediate_size=0,
              projection_dim=32, num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
              layer_norm_eps=1e-5)
cl = CLIPTextModel(CLIPTextConfig(**{**common, "hidden_size": 32, "intermediate_size": 64, "hidden_act": "quick_gelu"}))
cl.load_state_dict(load_file(f"{golden}/clip_text/clip_l.safetensors"), strict=False)
cg = CLIPTextModelWithProjection(CLIPTextConfig(**{**common, "hidden_size": 48, "intermediate_size": 96, "hidden_act": "gelu"}))
cg.load_state_dict(load_file(f"{golden}/clip_text/clip_g.safetensors"), strict=False)
cl.float().eval(); cg.float().eval()

g = torch.Generator().manual_seed(1234)
def vec(n, d, scale=0.5):
    return (torch.randn(n, d, generator=g) * scale).float()

# --- embedding files -------------------------------------------------------------------------------------------
emb = {}
# A1111 .pt (what its trainer saves): string_to_param {"*": [N, D]} with requires_grad
v = vec(3, 32).requires_grad_(True)
torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": v}, "name": "tiny-style", "step": 1500,
            "sd_checkpoint": "0123456789", "sd_checkpoint_name": "tiny-sd15"}, f"{out}/tiny-style.pt")
emb["tiny-style"] = {"": v.detach()}
# the original implementation (rinongal/textual_inversion): string_to_param is a torch.nn.ParameterDict
pd = torch.nn.ParameterDict({"*": torch.nn.Parameter(vec(2, 32))})
torch.save({"string_to_token": {"*": 265}, "string_to_param": pd}, f"{out}/origstyle.pt")
emb["origstyle"] = {"": pd["*"].detach()}
# A1111 .safetensors export: emb_params
v = vec(2, 32); save_file({"emb_params": v}, f"{out}/charb.safetensors"); emb["charb"] = {"": v}
# diffusers learned_embeds.bin: {"<token>": [D]}
v = vec(1, 32); torch.save({"<cat-toy>": v[0].clone()}, f"{out}/cattoy.bin"); emb["cattoy"] = {"": v}
# SDXL: clip_l + clip_g
vl, vg = vec(2, 32), vec(2, 48)
save_file({"clip_l": vl, "clip_g": vg}, f"{out}/xl-style.safetensors"); emb["xl-style"] = {"clip_l": vl, "clip_g": vg}
# error cases
save_file({"emb_params": vec(2, 48)}, f"{out}/wide.safetensors")          # a 48-wide (SD2-like) embedding
save_file({"emb_params": vec(76, 32)}, f"{out}/toolong.safetensors")      # 76 vectors: no 77-token window holds them
class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))
torch.save({"string_to_param": {"*": Evil()}}, f"{out}/evil.pt")           # a pickle that would run a command

# --- A1111 tokenize_line with embeddings -----------------------------------------------------------------------
BOS, EOS, COMMA = 49406, 49407, tok.convert_tokens_to_ids(",</w>")
def name_ids(name):
    return tok(name, add_special_tokens=False)["input_ids"]

def tokenize_line(runs, names, pad):
    """runs: [(text, weight)]; names: embedding names usable. Returns chunks [(ids77, mults77, fixes)]."""
    lookup = sorted([(name_ids(n), n) for n in names], key=lambda x: -len(x[0]))
    chunks, tokens, mults, fixes, last_comma = [], [], [], [], -1
    def next_chunk():
        nonlocal tokens, mults, fixes, last_comma
        t = [BOS] + tokens + [EOS] * (75 - len(tokens)) + [EOS]
        m = [1.0] + mults + [1.0] * (75 - len(mults)) + [1.0]
        if pad != EOS:
            i = t.index(EOS)
            t = t[:i + 1] + [pad] * (len(t) - i - 1)
        chunks.append((t, m, [(o + 1, n) for o, n in fixes]))
        tokens, mults, fixes, last_comma = [], [], [], -1
    for text, weight in runs:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        pos = 0
        while pos < len(ids):
            t = ids[pos]
            if t == COMMA:
                last_comma = len(tokens)
            elif len(tokens) == 75 and last_comma != -1 and len(tokens) - last_comma <= 20:
                brk = last_comma + 1
                rt, rm = tokens[brk:], mults[brk:]
                rf = [(o - brk, n) for o, n in fixes if o >= brk]
                fixes = [(o, n) for o, n in fixes if o < brk]
                tokens, mults = tokens[:brk], mults[:brk]
                next_chunk()
                tokens, mults, fixes = rt, rm, rf
            if len(tokens) == 75:
                next_chunk()
            hit = next(((i, n) for i, n in lookup if ids[pos:pos + len(i)] == i), None)
            if hit is None:
                tokens.append(t); mults.append(weight); pos += 1; continue
            i, n = hit
            k = next(iter(emb[n].values())).shape[0]
            if len(tokens) + k > 75:
                next_chunk()
            fixes.append((len(tokens), n))
            tokens += [0] * k; mults += [weight] * k; pos += len(i)
    if tokens or not chunks:
        next_chunk()
    return chunks

def encode(model, chunk, key, layer):
    ids, mults, fixes = chunk
    ids_t = torch.tensor([ids])
    def hook(mod, inp, outp):
        outp = outp.clone()
        for off, n in fixes:
            e = emb[n][key]
            outp[0, off:off + e.shape[0]] = e
        return outp
    h = model.text_model.embeddings.token_embedding.register_forward_hook(hook)
    try:
        o = model(input_ids=ids_t, output_hidden_states=True)
    finally:
        h.remove()
    z = o.last_hidden_state if layer == "last" else o.hidden_states[-2]
    m = torch.tensor(mults).reshape(1, -1, 1)
    before = z.mean()
    z = z * m
    z = z * (before / z.mean())
    pooled = o.text_embeds if hasattr(o, "text_embeds") else None
    return z, pooled

# --- cases -------------------------------------------------------------------------------------------------------
sd15_names = ["tiny-style", "origstyle", "charb", "cattoy"]
filler = " ".join(["house"] * 73)
cases = {
    "sd15_plain": ("a photo of tiny-style in a garden", [("a photo of tiny-style in a garden", 1.0)]),
    "sd15_weighted": ("charb and (tiny-style:1.3), cattoy, origstyle",
                      [("charb and ", 1.0), ("tiny-style", 1.3), (", cattoy, origstyle", 1.0)]),
    "sd15_boundary": (filler + " tiny-style", [(filler + " tiny-style", 1.0)]),
}
tensors = {}
with torch.no_grad():
    for name, (prompt, runs) in cases.items():
        chunks = tokenize_line(runs, sd15_names, EOS)
        zs = [encode(cl, c, "", "last")[0] for c in chunks]
        tensors[f"{name}.context"] = torch.cat(zs, 1).contiguous()
        tensors[f"{name}.ids"] = torch.tensor([c[0] for c in chunks], dtype=torch.int64)
    # SDXL: encoder 1 (clip_l, EOS padding) and 2 (clip_g, 0 padding), hidden_states[-2] without the final LN
    prompt, runs = "xl-style, a cat", [("xl-style, a cat", 1.0)]
    c1 = tokenize_line(runs, ["xl-style"], EOS)
    c2 = tokenize_line(runs, ["xl-style"], 0)
    z1, _ = encode(cl, c1[0], "clip_l", "penultimate")
    z2, pooled = encode(cg, c2[0], "clip_g", "penultimate")
    tensors["sdxl.context"] = torch.cat([z1, z2], -1).contiguous()
    tensors["sdxl.pooled"] = pooled.contiguous()
    tensors["sdxl.ids_g"] = torch.tensor([c2[0][0]], dtype=torch.int64)
save_file(tensors, f"{out}/reference.safetensors")
json.dump({k: v[0] for k, v in cases.items()} | {"sdxl": prompt}, open(f"{out}/prompts.json", "w"), indent=1)
print({k: tuple(v.shape) for k, v in tensors.items()})
