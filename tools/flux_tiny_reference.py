"""Reference for tests/models/test_flux_family.cpp (FluxFamily.TinyPipelineMatchesDiffusers): runs diffusers 0.31's
FluxPipeline's steps (copied from pipeline_flux.py: the installed transformers cannot import the pipeline module) on the tiny dev folder that the test writes (FluxFamily.SplitFilesAllInOneAndFolderGiveTheSameImage
leaves it in $TMPDIR/flux_folder_dev) with the repo's tokenizers, fixed initial latents, 2 steps, guidance 3.5, 8x8,
and saves noise / final latents / decoded image to OUT.

  /tmp/samplers-venv/bin/python tools/flux_tiny_reference.py /tmp/flux_folder_dev tests/data/golden/flux_pipeline_tiny/ref.safetensors
"""
import sys, os
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel
import numpy as np
import sentencepiece as spm
from diffusers import AutoencoderKL, FluxTransformer2DModel, FlowMatchEulerDiscreteScheduler

folder, out = sys.argv[1], sys.argv[2]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tr = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
                            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=24,
                            guidance_embeds=True, axes_dims_rope=(4, 6, 6))
tr.load_state_dict(load_file(f"{folder}/transformer/diffusion_pytorch_model.safetensors"))
clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=24, intermediate_size=48, num_hidden_layers=1,
                                    num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
                                    eos_token_id=49407, bos_token_id=49406, pad_token_id=49407))
csd = load_file(f"{folder}/text_encoder/model.safetensors")
if not any(k.startswith("text_model.") for k in clip.state_dict()):  # newer transformers drop the prefix
    csd = {k.removeprefix("text_model."): v for k, v in csd.items()}
bad = clip.load_state_dict(csd, strict=False)
assert not bad.unexpected_keys and all("position_ids" in k for k in bad.missing_keys), bad
t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                             relative_attention_num_buckets=32, relative_attention_max_distance=128,
                             feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True))
sd = load_file(f"{folder}/text_encoder_2/model.safetensors")
if "encoder.embed_tokens.weight" not in sd and "shared.weight" in sd:
    sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
bad = t5.load_state_dict(sd, strict=False)
assert not bad.unexpected_keys and not bad.missing_keys, bad
vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                    up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(32, 32), layers_per_block=1,
                    latent_channels=16, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
                    scaling_factor=0.3611, shift_factor=0.1159)
vae.load_state_dict(load_file(f"{folder}/vae/diffusion_pytorch_model.safetensors"))
sched = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                        base_image_seq_len=256, max_image_seq_len=4096)
tok = CLIPTokenizer(f"{repo}/assets/clip/vocab.json", f"{repo}/assets/clip/merges.txt", pad_token="<|endoftext|>")
tok2 = spm.SentencePieceProcessor(model_file=f"{repo}/assets/t5/spiece.model")


def pack(x, n, c, h, w):  # FluxPipeline._pack_latents
    x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // 2) * (w // 2), c * 4)


def unpack(x, h, w):  # FluxPipeline._unpack_latents for an h x w latent
    n, _, c4 = x.shape
    x = x.view(n, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, c4 // 4, h, w)


prompt, steps, guidance = "a red fox in the snow", int(os.environ.get("STEPS", "2")), 3.5
for module in (tr, clip, t5, vae):
    module.eval()  # built, not from_pretrained: T5 would apply its dropout
g = torch.Generator().manual_seed(0)
noise = torch.randn(1, 16, 4, 4, generator=g)
with torch.no_grad():
    # T5Tokenizer(legacy=True) of a plain lowercase prompt: the SentencePiece pieces, </s> (1), <pad> (0) to 512.
    pieces = tok2.encode(prompt) + [1]
    ids2 = torch.tensor([pieces + [0] * (512 - len(pieces))])
    context = t5(ids2, output_hidden_states=False)[0]
    ids = tok([prompt], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    pooled = clip(ids, output_hidden_states=False).pooler_output
    txt_ids = torch.zeros(context.shape[1], 3)
    img_ids = torch.zeros(2, 2, 3)
    img_ids[..., 1] += torch.arange(2)[:, None]
    img_ids[..., 2] += torch.arange(2)[None, :]
    img_ids = img_ids.reshape(4, 3)
    latents = pack(noise, 1, 16, 4, 4)
    seq = latents.shape[1]
    m = (1.15 - 0.5) / (4096 - 256)
    mu = seq * m + (0.5 - m * 256)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    for t in sched.timesteps:
        v = tr(hidden_states=latents, timestep=t.expand(1) / 1000, guidance=torch.full([1], guidance),
               pooled_projections=pooled, encoder_hidden_states=context, txt_ids=txt_ids, img_ids=img_ids,
               return_dict=False)[0]
        latents = sched.step(v, t, latents, return_dict=False)[0]
    lat = unpack(latents, 4, 4)
    img = vae.decode(lat / 0.3611 + 0.1159).sample
save_file({"noise": noise.contiguous(), "latents": lat.contiguous(), "decoded": img.contiguous(),
           "context": context.contiguous(), "pooled": pooled.contiguous()}, out)
print("saved", out, lat.abs().max().item())
