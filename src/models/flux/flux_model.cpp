// FluxModel: the DiffusionModel members over the Flux modules (conditioning, packing, VAE), as FluxPipeline does.
// Shape letters: B batch, C latent channels, h/w latent size, Li image tokens, Lt text tokens, Cp = 4C.
#include "models/flux/flux_model.h"

#include "io/json_field.h"
#include "models/t5/t5_loader.h"
#include "models/vae/vae_tiling.h"
#include "ops/ops.h"
#include "models/clip/clip_embeddings.h"
#include "text/prompt_parser.h"

namespace nuance {

GenerationDefaults flux_defaults(bool schnell) {
    GenerationDefaults d;
    d.width = d.height = 1024;
    d.steps = schnell ? 4 : 28;           // FluxPipeline's default (the dev card's example uses 50); schnell: 4
    d.cfg_scale = schnell ? 0.0f : 3.5f;  // dev: the distilled guidance input; schnell takes none
    d.sampler = "euler";                  // FlowMatchEulerDiscreteScheduler
    d.prompt = "a lighthouse on a cliff at dusk, oil painting";
    return d;
}

std::vector<std::pair<std::string, Module*>> FluxModel::modules() {
    return {{"text_encoder", clip_l.get()}, {"text_encoder_2", t5.get()}, {"transformer", transformer.get()},
            {"vae", vae.get()}};
}

LatentFormat FluxModel::latent_format() const {
    LatentFormat f;
    f.channels = vae->config().latent_channels;
    f.downscale = vae->config().downscale();
    f.scaling_factor = vae->scaling_factor();
    f.shift_factor = vae->shift_factor();
    return f;
}

Objective FluxModel::objective() const {
    Objective o;
    o.prediction = Prediction::Flow;
    // predict() gets FluxPipeline's t = sigma * 1000 (the scheduler's float32 timesteps) and passes t / 1000 to the
    // transformer, which multiplies by 1000 again, exactly as the pipeline does. (A scale of 1 would not reach
    // predict: the Denoiser answers from the schedule's sigma * 1000 table first.)
    o.flow_timestep_scale = 1000.0;
    FlowShift& s = o.flow;
    s.linspace_sigmas = true;     // FluxPipeline: sigmas = linspace(1, 1/N, N) before the shift
    s.tokens_per_side = 2;
    // dev: dynamic shift from the packed sequence length; schnell: shift 1.0, no dynamic shifting (its
    // scheduler_config.json). A folder's scheduler config says which.
    const auto& j = scheduler_config;
    constexpr std::string_view where = "scheduler/scheduler_config.json";
    s.dynamic = json_field(j, "use_dynamic_shifting", !schnell(), where);
    s.shift = json_field(j, "shift", schnell() ? 1.0 : 3.0, where);
    s.base_seq_len = json_field<int64_t>(j, "base_image_seq_len", 256, where);
    s.max_seq_len = json_field<int64_t>(j, "max_image_seq_len", 4096, where);
    s.base_shift = json_field(j, "base_shift", 0.5, where);
    s.max_shift = json_field(j, "max_shift", 1.15, where);
    NUANCE_CHECK(s.max_seq_len > s.base_seq_len, where, ": max_image_seq_len ", s.max_seq_len,
                 " must exceed base_image_seq_len ", s.base_seq_len);
    return o;
}

GenerationDefaults FluxModel::generation_defaults() const { return flux_defaults(schnell()); }

Conditioning FluxModel::encode(const ConditioningRequest& r) const {
    // PromptSyntax::A1111 (default): the prompt syntax, as the reference UIs: T5 tokens weighted as ComfyUI does
    // (t5_loader.h encode_t5_prompt), CLIP-L's pooled output from the first 75-token window of the parsed prompt
    // (a pooled vector takes no per-token weights, as in A1111/ComfyUI/sd.cpp). Literal: the text as diffusers.
    // A prompt without syntax of up to 75 CLIP tokens gives the same conditioning either way.
    const bool weighted = r.syntax == PromptSyntax::A1111;
    Conditioning out;
    // T5: last_hidden_state of max_sequence_length tokens (legacy tokenizer, padded, no mask) -> [1, Lt, Dj]
    const T5Tokenizer& t5_tok = t5_tokenizer ? *t5_tokenizer : T5Tokenizer::builtin();
    out["context"] = encode_t5_prompt(*t5, r.text, max_sequence_length, weighted, t5_tok);
    // CLIP-L: pooler_output of 77 tokens (FluxPipeline tokenizes with padding="max_length") -> [1, P]
    const ClipTokenizer& tok = clip_tokenizer ? *clip_tokenizer : ClipTokenizer::builtin();
    if (!weighted) {
        const std::vector<int64_t> ids = tok.encode_padded(r.text, 49407, 77);
        out["pooled"] = clip_l->forward(Tensor::from_ids(ids, {1, (int64_t)ids.size()})).pooled.f32().contiguous();
        return out;
    }
    // Textual inversion on CLIP-L: an embedding's clip_l vectors (SDXL files), else its one set (SD1.x files).
    std::vector<std::shared_ptr<const TextualInversion>> found;
    if (r.embeddings) found = r.embeddings->mentioned(r.text);
    const ClipEmbeddings emb = clip_embeddings_for(found, tok, *clip_l, "clip_l", true, "Flux");
    const PromptChunks pc = tokenize_weighted(tok, r.text, 49407, 75, emb.names_or_null());
    const std::vector<int64_t>& ids = pc.ids.front();
    const Tensor embeds = pc.fixes.empty() ? Tensor() : clip_token_embeds(*clip_l, ids, pc.fixes.front(), emb);
    out["pooled"] =
        clip_l->forward(Tensor::from_ids(ids, {1, (int64_t)ids.size()}), -1, embeds).pooled.f32().contiguous();
    return out;
}

Tensor FluxModel::predict(const Tensor& x_in, double timestep, const Conditioning& cond,
                          const StepContext& step) const {
    const int64_t B = x_in.size(0), h = x_in.size(2), w = x_in.size(3);
    NUANCE_CHECK(h % 2 == 0 && w % 2 == 0, "Flux packs 2x2 latent patches: the latent size ", h, "x", w,
                 " must be even (image size a multiple of ", 2 * vae->config().downscale(), ")");
    const Tensor& context = cond.at("context");                        // [B, Lt, Dj]
    const Tensor hidden = flux_pack_latents(x_in);                     // [B, Li, Cp]
    const Tensor t = Tensor::full({B}, (float)timestep / 1000.0f);     // sigma, as FluxPipeline: t / 1000
    const Tensor g = schnell() ? Tensor() : Tensor::full({B}, step.guidance);  // distilled guidance (dev)
    const Tensor out = transformer->forward(hidden, t, g, context, cond.at("pooled"), flux_image_ids(h, w),
                                            flux_text_ids(context.size(1)));  // [B, Li, Cp]
    return flux_unpack_latents(out, h, w);                             // [B, C, h, w]
}

Tensor FluxModel::decode(const Tensor& latents, const VaeTiling& tiling) const {
    return vae_decode_tiled(*vae, vae->from_latents(latents), tiling);  // z = latents / 0.3611 + 0.1159
}

Tensor FluxModel::encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const {
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    const DiagonalGaussian post = vae_encode_tiled(*vae, image_to_tensor(sized), tiling);
    const Tensor eps = rng.randn(post.mean.shape());  // diffusers: latent_dist.sample(generator) draws first
    return vae->to_latents(post.sample(eps));
}

std::string FluxModel::infotext_fields(const ConditioningRequest&) const { return ""; }

std::string FluxModel::describe() const {
    const FluxConfig& c = transformer->cfg;
    std::string s = str("family: flux\nguidance: ",
                        schnell() ? "none (schnell: one pass, no negative prompt)" : "distilled (--cfg-scale is the "
                        "guidance input, one pass, no negative prompt)", "\n");
    s += str("text_encoder: CLIP-L hidden=", clip_l->config().hidden, " layers=", clip_l->config().layers,
             " (pooled)\n");
    s += str("text_encoder_2: T5 d_model=", t5->config().d_model, " layers=", t5->config().layers,
             " max_sequence_length=", max_sequence_length, " tokenizer=",
             t5_tokenizer ? "the folder's tokenizer_2/" : "built-in (T5 v1.1, 32k)", "\n");
    s += "transformer: " + c.describe() + "\n";
    s += str("vae: channels=", vae->config().block_out_channels, " latent=", vae->config().latent_channels,
             " scaling=", vae->scaling_factor(), " shift=", vae->shift_factor(), "\n");
    const Objective o = objective();
    s += o.flow.dynamic ? str("schedule: flow, dynamic shift (", o.flow.base_shift, " at ", o.flow.base_seq_len,
                              " tokens .. ", o.flow.max_shift, " at ", o.flow.max_seq_len, ")\n")
                        : str("schedule: flow, shift ", o.flow.shift, "\n");
    return s;
}

}  // namespace nuance
