#!/usr/bin/env python3
"""Writes the libFuzzer dictionaries fuzz/dict/<target>.dict (tokens each parser compares against)."""
import os

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dict")


def esc(s):
    b = s.encode("latin-1")  # every token is written as its bytes: "\xc3\xa9" is UTF-8 'é'
    return '"' + "".join(chr(c) if 32 <= c < 127 and chr(c) not in '"\\' else "\\x%02x" % c for c in b) + '"'


def write(name, items):
    with open(os.path.join(DIR, name + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_%s, written by fuzz/make_dicts.py\n" % name)
        for i in items:
            f.write(esc(i) + "\n")


os.makedirs(DIR, exist_ok=True)
write("safetensors", ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", '"dtype"', '"shape"',
                      '"data_offsets"', '"__metadata__"', "[]", "[0,0]", "{}", "18446744073709551615",
                      "1099511627776", "-1", "1e400"])
st = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", '"dtype"', '"shape"', '"data_offsets"',
      '"__metadata__"']
write("lora", st + ["lora_unet_proj", "lora_unet_conv_in", "lora_unet_norm", "lora_unet_nobias",
                    "lora_te_text_model_encoder_layers_0_self_attn_q_proj", "unet.proj", "text_encoder."] +
      [".lora_down.weight", ".lora_up.weight", ".lora_mid.weight", ".lora_A.weight", ".lora_B.weight", ".alpha",
       ".dora_scale", ".lora_magnitude_vector", ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".hada_t1",
       ".hada_t2", ".lokr_w1", ".lokr_w2", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2_a", ".lokr_w2_b", ".lokr_t2", ".diff",
       ".diff_b", ".oft_blocks", ".rescale", ".a1.weight", ".a2.weight", ".b1.weight", ".b2.weight", ".bm.weight",
       ".w_norm", ".b_norm", ".on_input", ".weight"])
write("gguf", ["GGUF", "\x03\x00\x00\x00", "\x02\x00\x00\x00", "general.alignment", "general.architecture",
               "general.file_type", "general.quantization_version", "comfy.gguf.orig_shape.", "model.diffusion_model.",
               "enc.blk.0.attn_q.weight", "token_embd.weight", "\x00\x00\x00\x00\x00\x00\x00\x00",
               "\xff\xff\xff\xff\xff\xff\xff\xff", "\x00\x00\x00\x00\x00\x00\x00\x80", "\x20\x00\x00\x00",
               "\x40\x00\x00\x00"] + ["%c\x00\x00\x00" % t for t in [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 20, 23,
                                                                       24, 28, 30]])
ops = [chr(c) for c in b"(.0123FGIJKLMNPQRSTUVXabcdefghijlmnoprstu}"] + [chr(c) for c in range(0x80, 0x99)]
glob = ["ctorch._utils\n_rebuild_tensor_v2\n", "ctorch._utils\n_rebuild_parameter\n", "ccollections\nOrderedDict\n",
        "ctorch\nFloatStorage\n", "ctorch\nHalfStorage\n", "ctorch\nBFloat16Storage\n", "ctorch\nLongStorage\n",
        "ctorch\nBoolStorage\n", "cbuiltins\nset\n", "cos\nsystem\n", "\x80\x02", "\x80\x04\x95", "storage", "cpu",
        "state_dict", "epoch", "global_step", "torch._utils", "_rebuild_tensor_v2"]
write("pickle", ops + glob)
zipd = ["PK\x03\x04", "PK\x01\x02", "PK\x05\x06", "PK\x06\x06", "PK\x06\x07", "\x01\x00", "\xff\xff\xff\xff",
        "\xff\xff", "archive/data.pkl", "archive/data/0", "data.pkl", "/data/"]
write("zip", zipd)
write("ckpt", zipd + glob + ops)
write("png", ["\x89PNG\r\n\x1a\n", "IHDR", "IDAT", "IEND", "PLTE", "tRNS", "tEXt", "zTXt", "iTXt", "gAMA", "sRGB",
              "iCCP", "sBIT", "bKGD", "pHYs", "acTL", "fcTL", "\x00\x00\x00\x0d", "\x08\x06\x00\x00\x00", "\x10\x00",
              "parameters"])
write("jpeg", ["\xff\xd8", "\xff\xd9", "\xff\xc0", "\xff\xc1", "\xff\xc2", "\xff\xc4", "\xff\xda", "\xff\xdb",
               "\xff\xdd", "\xff\xe0", "\xff\xee", "Adobe", "JFIF\x00", "\xff\xd0", "\xff\xfe"])
write("prompt", ["(", ")", "[", "]", ":", "\\(", "\\)", "\\[", "\\]", "\\\\", " BREAK ", "BREAK", ":1.1)",
                 "<|startoftext|>", "<|endoftext|>", "'s", "'ll", "&amp;", "&lt;", "&#x41;", "\xc3\xa9",
                 "\xc3\x83\xc2\xa9", "\xe2\x80\x9c", "\xef\xac\x81", "\xef\xbc\xa1", "\x1b[31m", "\r\n", ",",
                 "\xef\xbf\xbd", "e+308", "nan", "inf"])
fields = ["prompt", "negative_prompt", "steps", "cfg_scale", "width", "height", "seed", "eta", "clip_skip",
          "scheduler", "sampler_name", "sampler_index", "batch_size", "n_iter", "send_images", "override_settings",
          "sd_model_checkpoint", "CLIP_stop_at_last_layers", "randn_source", "init_images", "denoising_strength",
          "mask", "model", "n", "size", "response_format", "output_format", "num_inference_steps", "guidance_scale",
          "sampler", "rng", "batch_count", "init_image", "strength", "data:image/png;base64,", "iVBORw0KGgo", "/9j/",
          "Karras", "Euler a", "DPM++ 2M SDE", "auto"]
write("request", ['"%s"' % f for f in fields] + ["{", "}", "[", "]", ":", ",", "null", "true", "false", "1e999",
                                                 "-9223372036854775808", "18446744073709551616"])
cfg = ["_class_name", "num_attention_heads", "attention_head_dim", "norm_num_groups", "norm_eps", "flip_sin_to_cos",
       "freq_shift", "addition_time_embed_dim", "in_channels", "out_channels", "latent_channels", "layers_per_block",
       "use_quant_conv", "use_post_quant_conv", "mid_block_add_attention", "block_out_channels", "scaling_factor",
       "shift_factor", "text_config", "hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size",
       "max_position_embeddings", "hidden_act", "layer_norm_eps", "quick_gelu", "gelu", "weight_map",
       "model.safetensors.index.json", "..", "model.safetensors", "pad_token", "content", "sample_size"]
write("diffusers_json", ['"%s"' % f for f in cfg] + ["{", "}", "[", "]", ":", ",", "null", "true", "-1", "0",
                                                     "1e999"])
