#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (small valid inputs of every kind each parser reads).

Run from anywhere: python3 fuzz/make_seeds.py  (needs Pillow for the PNG/JPEG seeds: pip install pillow).
Checkpoint seeds come from tests/data/ckpt (written by torch, tools/make_ckpt_fixtures.py); config seeds from the
golden cases' diffusers/transformers configs (tests/data/golden/*/case.json). Corpora are then minimised with
libFuzzer's -merge=1 (fuzz/README.md), so the files kept in the repo are this script's output plus what fuzzing
found, merged."""
import base64, collections, io, json, os, pickle, struct, zipfile, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, pad=True):
    """tensors: [(name, dtype, shape, raw bytes)]"""
    header, off, blob = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def seeds_safetensors():
    f32 = struct.pack("<6f", *range(6))
    put("safetensors", "f32_2x3", safetensors([("w", "F32", [2, 3], f32)], {"format": "pt"}))
    put("safetensors", "mixed", safetensors([
        ("a.weight", "F16", [2, 2], b"\x00\x3c" * 4), ("a.bias", "BF16", [2], b"\x80\x3f" * 2),
        ("ids", "I64", [3], struct.pack("<3q", 1, 2, 3)), ("mask", "BOOL", [4], b"\x01\x00\x01\x01"),
        ("d", "F64", [1], struct.pack("<d", 0.5)), ("i", "I32", [1, 1], struct.pack("<i", -7)),
        ("s", "I16", [2], b"\x01\x00\x02\x00"), ("c", "I8", [2], b"\xff\x01"), ("u", "U8", [], b"\x07")]))
    put("safetensors", "empty_tensor", safetensors([("e", "F32", [0, 4], b"")]))
    put("safetensors", "unaligned", safetensors([("x", "U8", [1], b"\x01"), ("y", "F32", [2], struct.pack("<2f", 1, 2))],
                                                pad=False))
    put("safetensors", "no_tensors", safetensors([], {"modelspec.title": "t"}))


def gguf(kvs, tensors, alignment=32, version=3):
    """kvs: [(key, type id, value bytes)]; tensors: [(name, ne fastest first, ggml type, raw bytes)]"""
    def gstr(x):
        x = x.encode()
        return struct.pack("<Q", len(x)) + x
    b = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        b += gstr(k) + struct.pack("<I", t) + v
    data = b""
    for name, ne, t, raw in tensors:
        data += b"\0" * ((-len(data)) % alignment)
        b += gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", t, len(data))
        data += raw
    return b + b"\0" * ((-len(b)) % alignment) + data


def seeds_gguf():
    golden = os.path.join(ROOT, "tests", "data", "golden", "gguf")
    put("gguf", "align64.gguf", open(os.path.join(golden, "align64.gguf"), "rb").read())
    s = lambda x: struct.pack("<Q", len(x)) + x.encode()
    kvs = [("general.architecture", 8, s("sd1")), ("general.file_type", 4, struct.pack("<I", 7)),
           ("a.u8", 0, b"\x07"), ("a.i16", 3, struct.pack("<h", -2)), ("a.f64", 12, struct.pack("<d", 0.5)),
           ("a.bool", 7, b"\x01"), ("a.u64", 10, struct.pack("<Q", 1 << 40)),
           ("a.strs", 9, struct.pack("<IQ", 8, 2) + s("x") + s("yz")),
           ("a.nested", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 5, 2) + struct.pack("<2i", 1, -1)),
           ("comfy.gguf.orig_shape.w", 9, struct.pack("<IQ", 5, 2) + struct.pack("<2i", 2, 32))]
    blocks = {2: 18, 3: 20, 6: 22, 7: 24, 8: 34, 20: 18}
    tensors = [("w", [64], 8, bytes(range(34)) * 2), ("f", [2, 3], 0, struct.pack("<6f", *range(6))),
               ("h", [3], 1, b"\x00\x3c" * 3), ("b", [2], 30, b"\x80\x3f" * 2)]
    for t, nb in blocks.items():
        tensors.append(("q%d" % t, [32, 1], t, bytes((i * 37 + t) % 256 for i in range(nb))))
    for t, nb in {10: 84, 11: 110, 12: 144, 13: 176, 14: 210, 23: 136}.items():
        tensors.append(("k%d" % t, [256], t, bytes((i * 53 + t) % 256 for i in range(nb))))
    put("gguf", "every_type.gguf", gguf(kvs, tensors))
    put("gguf", "sdcpp_no_kv.gguf", gguf([], [("model.diffusion_model.out.2.bias", [4], 1, b"\x00\x3c" * 4)]))
    put("gguf", "v2_align1.gguf", gguf([("general.alignment", 4, struct.pack("<I", 1))],
                                       [("i", [1], 24, b"\x01"), ("f", [1], 0, struct.pack("<f", 2))], 1, 2))
    put("gguf", "empty.gguf", gguf([], []))


def ckpt_files():
    d = os.path.join(ROOT, "tests", "data", "ckpt")
    out = {}
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.getsize(p) < 64 * 1024:
            out[n] = open(p, "rb").read()
    return out


def rezip(data, method):
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for i in src.infolist():
            z.writestr(i.filename, src.read(i.filename))
    return buf.getvalue()


def seeds_ckpt_pickle_zip():
    for n, data in ckpt_files().items():
        put("ckpt", n, data)
        put("ckpt", n + ".deflated", rezip(data, zipfile.ZIP_DEFLATED))
        put("zip", n, data)
        z = zipfile.ZipFile(io.BytesIO(data))
        for i in z.infolist():
            if i.filename.endswith("data.pkl"):
                put("pickle", n + ".data.pkl", z.read(i.filename))
    od = collections.OrderedDict([("a", 1), ("b", [1.5, None, True, "x" * 3, b"\x00\x01"])])
    for proto in range(0, 6):
        put("pickle", "dict_p%d" % proto, pickle.dumps({"k": (1, 2, -3, 2**40, 2**70), "l": [{}, [], ()], "s": {1, 2}},
                                                      protocol=proto))
        put("pickle", "odict_p%d" % proto, pickle.dumps(od, protocol=proto))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", pickle.dumps({"x": 1}, protocol=2))
        z.writestr("a/data/0", b"\x00" * 64)
        z.comment = b"comment"
    put("zip", "deflated", buf.getvalue())
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        with z.open("big", "w", force_zip64=True) as e:
            e.write(b"zip64 entry")
        z.writestr("dir/", b"")
    put("zip", "zip64", buf.getvalue())
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    put("zip", "empty", buf.getvalue())


def seeds_images():
    try:
        from PIL import Image, PngImagePlugin
    except ImportError:
        print("make_seeds.py: Pillow is not installed: no PNG/JPEG seeds (pip install pillow)")
        return
    def img(mode, w, h):
        im = Image.new("RGB", (w, h))
        im.putdata([((x * 37) % 256, (y * 53) % 256, (x * y) % 256) for y in range(h) for x in range(w)])
        return im.convert(mode)
    def png(im, **kw):
        b = io.BytesIO(); im.save(b, "PNG", **kw); return b.getvalue()
    def jpg(im, **kw):
        b = io.BytesIO(); im.save(b, "JPEG", **kw); return b.getvalue()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 8x8")
    info.add_text("comment", "zipped text " * 8, zip=True)
    info.add_itxt("title", "caf\u00e9 \u2603", lang="en", tkey="Title")
    put("png", "rgb", png(img("RGB", 5, 3)))
    put("png", "rgba_text", png(img("RGBA", 4, 4), pnginfo=info))
    put("png", "gray", png(img("L", 7, 2)))
    put("png", "gray_alpha", png(img("LA", 3, 3)))
    put("png", "palette", png(img("P", 6, 5)))
    put("png", "palette_trns", png(img("P", 4, 2), transparency=0))
    put("png", "bits1", png(img("1", 9, 3)))
    put("png", "gray16", png(img("I", 3, 2).point(lambda v: v * 200).convert("I;16")))
    put("jpeg", "rgb_444", jpg(img("RGB", 9, 7), quality=90, subsampling=0))
    put("jpeg", "rgb_420", jpg(img("RGB", 17, 13), quality=50, subsampling=2))
    put("jpeg", "gray", jpg(img("L", 8, 8)))
    put("jpeg", "cmyk", jpg(img("CMYK", 5, 6)))
    put("jpeg", "progressive", jpg(img("RGB", 16, 16), progressive=True))
    put("jpeg", "optimized_restart", jpg(img("RGB", 24, 8), optimize=True))
    # Request seeds carry tiny base64 images.
    return base64.b64encode(png(img("RGB", 8, 8))).decode(), base64.b64encode(jpg(img("RGB", 8, 8))).decode()


def seeds_prompt():
    for i, p in enumerate([
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        "masterpiece, best quality, (photo of a cat:1.2) BREAK [[blurry]] \\(literal\\) \\[x\\] \\\\",
        "(unbalanced [brackets (a:1e3) (b:-0.5) (c:) (:2)",
        "caf\u00e9 na\u00efve \ufb01sh \uff21\uff22 \u201cquoted\u201d \u3000<|startoftext|>x<|endoftext|> &amp; &lt;",
        "don't it's we're I've I'm you'll he'd 123 4.5 !!! \U0001F600 \u0645\u0631\u062d\u0628\u0627 \u4f60\u597d",
        ", ".join(["word%d" % k for k in range(90)]),
        "caf\xc3\xa9 mojibake \xe2\x80\x9c",
        "",
    ]):
        put("prompt", "p%d" % i, p)
    put("prompt", "invalid_utf8", b"a \xff\xfe (b:1.1) \xc3 \xe2\x82 \xed\xa0\x80 end")


def seeds_request(b64):
    png_b64, jpg_b64 = b64 if b64 else ("", "")
    reqs = {
        "a1111_txt2img": {"prompt": "a cat", "negative_prompt": "blurry", "steps": 20, "cfg_scale": 7.5,
                          "width": 512, "height": 512, "seed": -1, "sampler_name": "DPM++ 2M Karras",
                          "scheduler": "Automatic", "batch_size": 2, "n_iter": 1, "send_images": True,
                          "override_settings": {"sd_model_checkpoint": "m", "CLIP_stop_at_last_layers": 2,
                                                "randn_source": "CPU"}, "eta": 0.0, "clip_skip": 1},
        "a1111_img2img": {"prompt": "x", "init_images": [png_b64], "denoising_strength": 0.5, "mask": "",
                          "sampler_index": "Euler a", "width": 64, "height": 64},
        "a1111_img2img_jpeg": {"prompt": "x", "init_images": ["data:image/jpeg;base64," + jpg_b64]},
        "openai": {"prompt": "a dog", "model": "dall-e-3", "n": 1, "size": "512x768", "response_format": "b64_json",
                   "output_format": "png", "num_inference_steps": 10, "guidance_scale": 5, "seed": 42,
                   "sampler": "euler", "scheduler": "karras"},
        "native": {"prompt": "p", "model": "m", "sampler": "dpmpp_2m", "batch_count": 1, "rng": "cpu",
                   "init_image": png_b64, "strength": 0.3, "steps": 4, "width": 64, "height": 64, "seed": 3},
        "floats": {"steps": 2.0, "width": 5.12e2, "seed": 18446744073709551615, "cfg_scale": 1e308},
    }
    for n, r in reqs.items():
        put("request", n, json.dumps(r))


def seeds_diffusers_json():
    g = os.path.join(ROOT, "tests", "data", "golden")
    for case in ["unet_sd15", "unet_sdxl", "vae", "clip_text"]:
        p = os.path.join(g, case, "case.json")
        if not os.path.exists(p):
            continue
        for name, m in json.load(open(p)).get("models", {}).items():
            if isinstance(m, dict) and isinstance(m.get("config"), dict):
                put("diffusers_json", "%s_config.json" % name, json.dumps(m["config"], indent=1))
    put("diffusers_json", "model_index.json", json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "text_encoder": ["transformers", "CLIPTextModel"], "unet": ["diffusers", "UNet2DConditionModel"]}))
    put("diffusers_json", "scheduler_config.json", json.dumps({
        "_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading"}))
    put("diffusers_json", "tokenizer_config.json", json.dumps({"pad_token": {"content": "!", "lstrip": False}}))
    put("diffusers_json", "index.json", json.dumps({"metadata": {"total_size": 16}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors", "b.weight": "model-00002-of-00002.safetensors"}}))
    put("diffusers_json", "clip_model.json", json.dumps({"text_config": {"hidden_size": 768, "num_attention_heads": 12,
                                                                          "hidden_act": "gelu", "layer_norm_eps": 1e-5}}))


def seeds_lora():
    """LoRA / LyCORIS files for fuzz_lora's tiny model: proj Linear [4, 8] (+ bias), conv_in Conv2d [4, 4, 3, 3],
    norm LayerNorm [4], nobias Linear [4, 4] (no bias), a text encoder's q_proj [4, 4]."""
    def t(name, shape, scale=0.1, dt="F32"):
        n = 1
        for d in shape:
            n *= d
        vals = [scale * (((i * 37) % 11) - 5) / 5 for i in range(n)]
        if dt == "F16":
            return (name, "F16", shape, struct.pack("<%de" % n, *vals))
        return (name, "F32", shape, struct.pack("<%df" % n, *vals))

    def one(name, v):
        return (name, "F32", [], struct.pack("<f", v))

    u, c, te = "lora_unet_proj", "lora_unet_conv_in", "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    put("lora", "lora", safetensors([t(u + ".lora_down.weight", [2, 8]), t(u + ".lora_up.weight", [4, 2]),
                                     one(u + ".alpha", 1.0), t(c + ".lora_down.weight", [1, 4, 3, 3]),
                                     t(c + ".lora_up.weight", [4, 1, 1, 1]), t(te + ".lora_down.weight", [1, 4], dt="F16"),
                                     t(te + ".lora_up.weight", [4, 1], dt="F16")], {"ss_network_module": "networks.lora"}))
    put("lora", "peft_dora", safetensors([t("unet.proj.lora_A.weight", [2, 8]), t("unet.proj.lora_B.weight", [4, 2]),
                                          t("unet.proj.lora_magnitude_vector", [4], 1.0)]))
    put("lora", "tucker_dora", safetensors([t(c + ".lora_down.weight", [2, 4, 1, 1]), t(c + ".lora_mid.weight", [2, 2, 3, 3]),
                                            t(c + ".lora_up.weight", [4, 2, 1, 1]), t(c + ".dora_scale", [1, 4, 1, 1], 1.0)]))
    put("lora", "loha", safetensors([t(u + ".hada_w1_a", [4, 2]), t(u + ".hada_w1_b", [2, 8]), t(u + ".hada_w2_a", [4, 2]),
                                     t(u + ".hada_w2_b", [2, 8]), one(u + ".alpha", 2.0), t(c + ".hada_w1_a", [2, 4]),
                                     t(c + ".hada_w1_b", [2, 4]), t(c + ".hada_w2_a", [2, 4]), t(c + ".hada_w2_b", [2, 4]),
                                     t(c + ".hada_t1", [2, 2, 3, 3]), t(c + ".hada_t2", [2, 2, 3, 3])]))
    put("lora", "lokr", safetensors([t(u + ".lokr_w1", [2, 2]), t(u + ".lokr_w2_a", [2, 1]), t(u + ".lokr_w2_b", [1, 4]),
                                     t(c + ".lokr_w1", [2, 2]), t(c + ".lokr_w2_a", [1, 2]), t(c + ".lokr_w2_b", [1, 2]),
                                     t(c + ".lokr_t2", [1, 1, 3, 3])]))
    put("lora", "ia3", safetensors([t(u + ".weight", [4]), one(u + ".on_input", 0.0), t(c + ".weight", [1, 4, 1, 1]),
                                    one(c + ".on_input", 1.0), t(te + ".weight", [4]), one(te + ".on_input", 0.0)]))
    put("lora", "oft", safetensors([t(u + ".oft_blocks", [2, 2, 2]), t(u + ".rescale", [4, 1], 1.0), one(u + ".alpha", 1e-3),
                                    t(c + ".oft_blocks", [1, 4, 4]), t(te + ".oft_blocks", [4, 1, 1])]))
    put("lora", "boft", safetensors([t(u + ".oft_blocks", [2, 2, 2, 2]), t(u + ".rescale", [4, 1], 1.0),
                                     t(c + ".oft_blocks", [1, 1, 4, 4]), one(c + ".alpha", 0.0)]))
    put("lora", "glora", safetensors([t(u + ".a1.weight", [8, 2]), t(u + ".a2.weight", [2, 8]), t(u + ".b1.weight", [4, 2]),
                                      t(u + ".b2.weight", [2, 8]), one(u + ".alpha", 1.0),
                                      t(c + ".a1.weight", [4, 1, 1, 1]), t(c + ".a2.weight", [1, 4, 1, 1]),
                                      t(c + ".b1.weight", [4, 1, 1, 1]), t(c + ".b2.weight", [1, 4, 1, 1]),
                                      t(c + ".bm.weight", [1, 1, 3, 3]),
                                      t(te + ".a1.weight", [2, 4]), t(te + ".a2.weight", [4, 2]), t(te + ".b1.weight", [2, 4]),
                                      t(te + ".b2.weight", [4, 2])]))
    put("lora", "full_norm", safetensors([t(u + ".diff", [4, 8]), t(u + ".diff_b", [4]), t("lora_unet_nobias.diff_b", [4]),
                                          t("lora_unet_norm.w_norm", [4]), t("lora_unet_norm.b_norm", [4]),
                                          t(c + ".lokr_w1", [4, 4]), t(c + ".lokr_w2", [1, 1, 3, 3]),
                                          t(c + ".diff_b", [4])]))
    put("lora", "diffusers_old", safetensors([t("unet.proj.processor.to_q_lora.down.weight", [1, 8]),
                                              t("proj.lora.up.weight", [4, 1]), t("proj.lora.down.weight", [1, 8])]))


if __name__ == "__main__":
    seeds_safetensors()
    seeds_gguf()
    seeds_ckpt_pickle_zip()
    b64 = seeds_images()
    seeds_prompt()
    seeds_request(b64)
    seeds_diffusers_json()
    seeds_lora()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        print("%-16s %3d files %8d bytes" % (t, len(files), sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)))
