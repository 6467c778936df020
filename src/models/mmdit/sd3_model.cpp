// SD3Model: conditioning (StableDiffusion3Pipeline.encode_prompt), predict, VAE, defaults.
// Shape letters: B batch (uncond + cond rows), C latent channels (16), h/w latent size, L tokens, D widths.
#include "models/mmdit/sd3_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "io/weights.h"
#include "models/mmdit/mmdit_presets.h"
#include "models/model_defaults.h"
#include "models/t5/t5_loader.h"
#include "ops/ops.h"
#include "models/clip/clip_embeddings.h"
#include "text/prompt_parser.h"

namespace nuance {

namespace {

// One 77-token window through both CLIPs: cat_ch(CLIP-L hidden_states[-2], CLIP-G hidden_states[-2]) [1, 77, Dl + Dg]
// (no final LayerNorm) and, when asked, the projected pooled outputs cat_ch(L text_embeds, G text_embeds) [1, Pl + Pg].
// embeds_l / embeds_g (optional): token embeddings with textual-inversion vectors written in.
Tensor encode_lg_window(const SD3ClipSlot& l, const SD3ClipSlot& g, const std::vector<int64_t>& ids_l,
                        const std::vector<int64_t>& ids_g, Tensor* pooled, const Tensor& embeds_l = {},
                        const Tensor& embeds_g = {}) {
    const ClipTextOutput ol = l.model->forward(Tensor::from_ids(ids_l, {1, (int64_t)ids_l.size()}), -1, embeds_l);
    const ClipTextOutput og = g.model->forward(Tensor::from_ids(ids_g, {1, (int64_t)ids_g.size()}), -1, embeds_g);
    if (pooled) {
        const Tensor pl = ol.text_embeds.defined() ? ol.text_embeds : ol.pooled;
        const Tensor pg = og.text_embeds.defined() ? og.text_embeds : og.pooled;
        *pooled = cat({pl.f32(), pg.f32()}, 1);
    }
    return cat({ol.hidden_states[ol.hidden_states.size() - 2].f32(), og.hidden_states[og.hidden_states.size() - 2].f32()},
               2);
}

bool same_config(const MMDiTConfig& a, const MMDiTConfig& b) {
    return a.hidden == b.hidden && a.depth == b.depth && a.qk_norm == b.qk_norm &&
           a.dual_attention_layers == b.dual_attention_layers && a.joint_attention_dim == b.joint_attention_dim &&
           a.pooled_projection_dim == b.pooled_projection_dim;
}

}  // namespace

std::string sd3_variant_of(const MMDiTConfig& c) {
    for (const char* v : {"sd3.5-large", "sd3.5-medium", "sd3-medium"})
        if (same_config(c, mmdit_preset(v))) return v;
    if (c.qk_norm) return c.dual_attention_layers.empty() ? "sd3.5-large" : "sd3.5-medium";  // same kind, other size
    return "sd3";
}

GenerationDefaults sd3_variant_defaults(const std::string& variant) {
    GenerationDefaults d;
    d.width = d.height = 1024;
    d.sampler = "euler";  // FlowMatchEulerDiscreteScheduler
    d.scheduler = "";
    if (variant == "sd3.5-large") {
        d.steps = 28;
        d.cfg_scale = 3.5f;
    } else if (variant == "sd3.5-medium") {
        d.steps = 40;
        d.cfg_scale = 4.5f;
    } else {  // sd3-medium card: 28 steps, guidance 7
        d.steps = 28;
        d.cfg_scale = 7.0f;
    }
    d.prompt = "a photo of a cat holding a sign that says hello world";
    return d;
}

std::vector<std::pair<std::string, Module*>> SD3Model::modules() {
    std::vector<std::pair<std::string, Module*>> out{{"text_encoder", clip_l.model.get()},
                                                     {"text_encoder_2", clip_g.model.get()}};
    if (t5) out.push_back({"text_encoder_3", t5.get()});
    out.push_back({"transformer", transformer.get()});
    out.push_back({"vae", vae.get()});
    return out;
}

std::string SD3Model::describe() const {
    std::ostringstream s;
    s << "family: sd3\n"
      << "variant: " << variant_name << "\n"
      << "transformer: " << transformer->config().describe() << "\n"
      << "text encoders: CLIP-L (" << clip_l.model->config().hidden << ", " << clip_l.source << "), CLIP-G ("
      << clip_g.model->config().hidden << ", " << clip_g.source << "), T5 ("
      << (t5 ? str(t5->config().d_model, ", ", t5_source) : std::string("none: zeros, pass --t5xxl")) << ")\n"
      << "objective: flow matching, shift " << shift << "\n"
      << "latents: " << latent_format().channels << " ch, scale " << vae->scaling_factor() << ", shift "
      << vae->shift_factor() << "\n";
    if (t5) s << "t5 tokenizer: " << (t5_tokenizer ? "the folder's tokenizer_3/" : "built-in (T5 v1.1, 32k)") << "\n";
    return s.str();
}

void SD3Model::check_widths() const {
    const MMDiTConfig& c = transformer->config();
    const int64_t dl = clip_l.model->config().hidden, dg = clip_g.model->config().hidden;
    NUANCE_CHECK(dl + dg <= c.joint_attention_dim, "SD3: the CLIP-L (", dl, ") and CLIP-G (", dg,
                 ") widths add up to more than the transformer's context width ", c.joint_attention_dim);
    if (t5)
        NUANCE_CHECK(t5->config().d_model == c.joint_attention_dim, "SD3: the T5 encoder's width ",
                     t5->config().d_model, " (", t5_source, ") is not the transformer's context width ",
                     c.joint_attention_dim);
    auto proj = [](const SD3ClipSlot& s) {
        const int64_t p = s.model->config().projection_dim;
        return p > 0 ? p : s.model->config().hidden;
    };
    NUANCE_CHECK(proj(clip_l) + proj(clip_g) == c.pooled_projection_dim, "SD3: the CLIP-L (", proj(clip_l),
                 ") and CLIP-G (", proj(clip_g), ") pooled widths do not add up to the transformer's pooled width ",
                 c.pooled_projection_dim);
    NUANCE_CHECK(vae->config().latent_channels == c.in_channels, "SD3: the VAE has ", vae->config().latent_channels,
                 " latent channels, the transformer takes ", c.in_channels);
}

LatentFormat SD3Model::latent_format() const {
    LatentFormat f;
    f.channels = vae->config().latent_channels;
    f.downscale = vae->config().downscale();
    f.scaling_factor = vae->scaling_factor();
    f.shift_factor = vae->shift_factor();
    if (f.channels == 16)  // ComfyUI comfy/latent_formats.py SD3.latent_rgb_factors
        f.rgb_factors = {{-0.0922f, -0.0175f, 0.0749f}, {0.0311f, 0.0633f, 0.0954f},  {0.1994f, 0.0927f, 0.0458f},
                         {0.0856f, 0.0339f, 0.0902f},   {0.0587f, 0.0272f, -0.0496f}, {-0.0006f, 0.1104f, 0.0309f},
                         {0.0978f, 0.0306f, 0.0427f},   {-0.0042f, 0.1038f, 0.1358f}, {-0.0194f, 0.0020f, 0.0669f},
                         {-0.0488f, 0.0130f, -0.0268f}, {0.0922f, 0.0988f, 0.0951f},  {-0.0278f, 0.0524f, -0.0542f},
                         {0.0332f, 0.0456f, 0.0895f},   {-0.0069f, -0.0030f, -0.0810f}, {-0.0596f, -0.0465f, -0.0293f},
                         {-0.1448f, -0.1463f, -0.1189f}};
    return f;
}

Objective SD3Model::objective() const {
    Objective o;
    o.prediction = Prediction::Flow;
    o.flow.shift = shift;
    o.flow.dynamic = false;
    o.flow_timestep_scale = 1000.0;
    return o;
}

SD3Model::Slg SD3Model::resolve_slg(const SkipLayerGuidance& s) const {
    Slg r;
    // The Medium model card's layers need its 24 blocks (tiny test shapes of the Medium kind have fewer).
    const bool default_on = variant_name == "sd3.5-medium" && transformer && transformer->config().depth > 9;
    if (s.layers) r.layers = *s.layers;
    else if (s.scale || default_on) r.layers = {7, 8, 9};
    r.scale = s.scale ? *s.scale : 2.8f;
    r.start = s.start;
    r.stop = s.stop;
    return r;
}

bool SD3Model::Slg::active_at(int step, int steps) const {
    return on() && step >= 0 && steps > 0 && step > steps * start && step < steps * stop;
}

void SD3Model::validate_request(const ConditioningRequest& r) const {
    const Slg s = resolve_slg(r.slg);
    const int64_t depth = transformer->config().depth;
    NUANCE_CHECK((int64_t)s.layers.size() <= depth, "--skip-layers: ", s.layers.size(), " layers for a transformer of ",
                 depth, " blocks");
    for (size_t i = 0; i < s.layers.size(); ++i) {
        NUANCE_CHECK(s.layers[i] >= 0 && s.layers[i] < depth, "--skip-layers: layer ", s.layers[i],
                     " is not a block index of this transformer (0..", depth - 1, ")");
        for (size_t j = 0; j < i; ++j)
            NUANCE_CHECK(s.layers[j] != s.layers[i], "--skip-layers: layer ", s.layers[i], " is given twice");
    }
    NUANCE_CHECK(std::isfinite(s.scale), "--slg-scale must be finite, got ", s.scale);
    NUANCE_CHECK(std::isfinite(s.start) && std::isfinite(s.stop) && s.start >= 0 && s.start <= s.stop && s.stop <= 1,
                 "--skip-layer-start ", s.start, " and --skip-layer-end ", s.stop, ": expected 0 <= start <= end <= 1");
    NUANCE_CHECK(r.clip_skip <= 1, "clip skip ", r.clip_skip, ": SD3 always takes both CLIP encoders' penultimate ",
                 "layer (as diffusers does); leave clip skip out");
    NUANCE_CHECK(r.class_label < 0, "class label ", r.class_label, ": SD3 is conditioned on text, not on a class");
}

Tensor SD3Model::encode_clip(const std::string& text, bool weighted, Tensor* pooled,
                             const EmbeddingLibrary* embeddings) const {
    const int64_t D = transformer->config().joint_attention_dim;
    std::vector<Tensor> windows;  // each [1, 77, Dl + Dg]
    if (!weighted) {
        // diffusers _get_clip_prompt_embeds: tokenizer(padding="max_length", max_length=77, truncation=True), the
        // text taken literally.
        windows.push_back(encode_lg_window(clip_l, clip_g, clip_l.tokenizer().encode_padded(text, clip_l.pad_id),
                                           clip_g.tokenizer().encode_padded(text, clip_g.pad_id), pooled));
    } else {
        // A1111's SD3ClipLG (modules/models/sd3/sd3_cond.py) on sd_hijack_clip's TextConditionalModel: the prompt
        // syntax, 75-token chunks (BREAK, comma back-tracking), each window's emphasis applied to the concatenated
        // L+G output with the window's mean restored, the pooled output of the first window.
        // Textual inversion as on SDXL: an embedding with clip_l and clip_g vectors.
        std::vector<std::shared_ptr<const TextualInversion>> found;
        if (embeddings) found = embeddings->mentioned(text);
        const ClipEmbeddings el = clip_embeddings_for(found, clip_l.tokenizer(), *clip_l.model, "clip_l", false, "SD3");
        const ClipEmbeddings eg = clip_embeddings_for(found, clip_g.tokenizer(), *clip_g.model, "clip_g", false, "SD3");
        const PromptChunks pl = tokenize_weighted(clip_l.tokenizer(), text, clip_l.pad_id, 75, el.names_or_null());
        const PromptChunks pg = tokenize_weighted(clip_g.tokenizer(), text, clip_g.pad_id, 75, eg.names_or_null());
        NUANCE_CHECK(pl.ids.size() == pg.ids.size(), "SD3: the CLIP-L (", clip_l.source, ") and CLIP-G (",
                     clip_g.source, ") tokenizers split the prompt into ", pl.ids.size(), " and ", pg.ids.size(),
                     " chunks of 75 tokens; their vocabularies differ");
        for (size_t i = 0; i < pl.ids.size(); ++i) {
            static const std::vector<PromptFix> kNone;
            const std::vector<PromptFix>& fl = i < pl.fixes.size() ? pl.fixes[i] : kNone;
            const std::vector<PromptFix>& fg = i < pg.fixes.size() ? pg.fixes[i] : kNone;
            Tensor z = encode_lg_window(clip_l, clip_g, pl.ids[i], pg.ids[i], i == 0 ? pooled : nullptr,
                                        clip_token_embeds(*clip_l.model, pl.ids[i], fl, el),
                                        clip_token_embeds(*clip_g.model, pg.ids[i], fg, eg));
            const std::vector<float>& wl = pl.weights[i];
            const std::vector<float>& wg = pg.weights[i];
            bool all_one = true;
            for (size_t j = 0; j < wl.size(); ++j) all_one = all_one && wl[j] == 1.0f && wg[j] == 1.0f;
            if (!all_one) {
                const int64_t L = z.size(1), dl = clip_l.model->config().hidden, dg = clip_g.model->config().hidden;
                std::vector<float> w((size_t)(L * (dl + dg)));  // [L, Dl + Dg]: token j's weight on its columns
                for (int64_t j = 0; j < L; ++j) {
                    std::fill_n(w.begin() + j * (dl + dg), dl, wl[(size_t)j]);
                    std::fill_n(w.begin() + j * (dl + dg) + dl, dg, wg[(size_t)j]);
                }
                const double before = mean_all(z);
                z = z * Tensor::from_vector(w, {1, L, dl + dg});
                const double after = mean_all(z);
                if (after != 0.0) z = z * (float)(before / after);
            }
            windows.push_back(z);
        }
    }
    Tensor clip = windows.size() == 1 ? windows[0] : cat(windows, 1);  // [1, 77k, Dl + Dg]
    const int64_t extra = D - clip.size(2);
    if (extra > 0) clip = cat({clip, Tensor::zeros({1, clip.size(1), extra})}, 2);  // [1, 77k, D]
    return clip;
}

Conditioning SD3Model::encode(const ConditioningRequest& r) const {
    // The negative side is encoded as text too (diffusers: negative_prompt "" -> the empty string's embeddings).
    const bool weighted = r.syntax == PromptSyntax::A1111;
    Tensor pooled;
    const Tensor clip = encode_clip(r.text, weighted, &pooled, r.embeddings.get());  // [1, 77k, D]
    const int64_t D = transformer->config().joint_attention_dim;
    const T5Tokenizer& tok = t5_tokenizer ? *t5_tokenizer : T5Tokenizer::builtin();
    const Tensor t5_part = t5 ? encode_t5_prompt(*t5, r.text, t5_max_length, weighted, tok)
                              : Tensor::zeros({1, (int64_t)t5_max_length, D});  // [1, 256, D]
    Conditioning c;
    c["context"] = cat({clip, t5_part}, 1);  // [1, 77k + 256, D]
    c["pooled"] = pooled;                    // [1, Pl + Pg]
    return c;
}

void SD3Model::match_for_batch(const std::vector<Conditioning*>& rows, const ConditioningRequest& like) const {
    // A1111: a shorter prompt's CLIP part gets empty-prompt windows (before the T5 part, whose length is fixed).
    int64_t longest = 0;
    for (const Conditioning* c : rows) longest = std::max(longest, c->at("context").size(1));
    Tensor empty;
    for (Conditioning* c : rows) {
        const Tensor ctx = c->at("context");
        const int64_t L = ctx.size(1), T = t5_max_length, missing = longest - L;
        if (missing == 0) continue;
        NUANCE_CHECK_CODE(missing % 77 == 0 && L >= T, Internal, "SD3: contexts of ", L, " and ", longest,
                          " tokens cannot be matched with 77-token windows");
        if (!empty.defined()) empty = encode_clip("", like.syntax == PromptSyntax::A1111, nullptr);
        std::vector<Tensor> parts{ctx.narrow(1, 0, L - T)};
        for (int64_t i = 0; i < missing / 77; ++i) parts.push_back(empty);
        parts.push_back(ctx.narrow(1, L - T, T));
        (*c)["context"] = cat(parts, 1).contiguous();
    }
}

Tensor SD3Model::predict(const Tensor& x_in, double timestep, const Conditioning& cond, const StepContext&) const {
    const int64_t B = x_in.size(0);
    const Tensor t = Tensor::full({B}, (float)timestep);  // diffusers: timestep.expand(B)
    return transformer->forward(x_in, t, cond.at("context"), cond.at("pooled"));  // [B, C, h, w] velocity
}

Tensor SD3Model::decode(const Tensor& latents, const VaeTiling& tiling) const {
    return vae_decode_tiled(*vae, vae->from_latents(latents), tiling);
}

Tensor SD3Model::encode_image(const Image& img, int w, int h, const VaeTiling& tiling, Rng& rng) const {
    const Image sized = (img.width == w && img.height == h) ? img : resize_image(img, w, h);
    const DiagonalGaussian post = vae_encode_tiled(*vae, image_to_tensor(sized), tiling);
    const Tensor eps = rng.randn(post.mean.shape());  // diffusers: latent_dist.sample(generator)
    return vae->to_latents(post.sample(eps));
}

std::string SD3Model::infotext_fields(const ConditioningRequest& r) const {
    std::string s = t5 ? std::string() : std::string(", T5: none");
    const Slg g = resolve_slg(r.slg);
    if (g.on()) {  // sd.cpp's flag names (ComfyUI's SkipLayerGuidanceSD3: layers, scale, start/end percent)
        std::string layers;
        for (int64_t l : g.layers) layers += (layers.empty() ? "" : ",") + std::to_string(l);
        std::ostringstream o;
        o << ", Skip layers: \"" << layers << "\", SLG scale: " << g.scale << ", Skip layer start: " << g.start
          << ", Skip layer end: " << g.stop;
        s += o.str();
    }
    return s;
}

Tensor SD3Model::guide(const Tensor& x_in, double timestep, const Conditioning& batch, const StepContext& step,
                       const ConditioningRequest& request, const Tensor& uncond, const Tensor& cond,
                       float scale) const {
    const Tensor g = combine_guidance(uncond, cond, scale);
    const Slg s = resolve_slg(request.slg);
    if (!s.active_at(step.step, step.steps)) return g;
    // diffusers: the conditional half only, the same timestep, the blocks in skip_guidance_layers left out.
    const Tensor& ctx = batch.at("context");
    const Tensor& pooled = batch.at("pooled");
    NUANCE_CHECK_CODE(ctx.size(0) == 2 && pooled.size(0) == 2 && x_in.size(0) == 1, Internal,
                      "skip-layer guidance: expected a batch of uncond + cond rows, got context ", ctx.shape());
    const Tensor skipped = transformer->forward(x_in, Tensor::full({1}, (float)timestep),
                                                ctx.narrow(0, 1, 1).contiguous(), pooled.narrow(0, 1, 1).contiguous(),
                                                s.layers);
    return g + (cond - skipped) * s.scale;  // noise_pred += (noise_pred_text - noise_pred_skip_layers) * scale
}

GenerationDefaults SD3Model::generation_defaults() const {
    GenerationDefaults d = sd3_variant_defaults(variant_name);
    if (native_size >= 8 && native_size <= 16384) d.width = d.height = native_size;
    if (is_directory(path)) apply_folder_defaults(path, d);
    return d;
}

}  // namespace nuance
