// Shape letters: N batch, C latent channels, H/W image size, h/w latent size.
#include "models/vae/autoencoder_kl.h"

#include "autograd/nn_layers.h"
#include "models/vae/vae_forward.h"

#include <nlohmann/json.hpp>

namespace nuance {

// ---- config ----

AutoencoderKLConfig AutoencoderKLConfig::detect(const std::map<std::string, Tensor>& t, const std::string& prefix,
                                                int64_t groups) {
    auto has = [&](const std::string& name) { return t.count(prefix + name) > 0; };
    auto get = [&](const std::string& name) -> const Tensor& {
        auto it = t.find(prefix + name);
        NUANCE_CHECK_CODE(it != t.end(), NotFound, "AutoencoderKL: tensor '", prefix + name, "' not found");
        NUANCE_CHECK(it->second.dim() == 4, "AutoencoderKL: tensor '", prefix + name, "' has shape ",
                     it->second.shape(), ", expected a conv weight [O, I, kh, kw]");
        return it->second;
    };
    AutoencoderKLConfig c;
    c.in_channels = get("encoder.conv_in.weight").size(1);
    c.block_out_channels.clear();
    for (int i = 0; has(str("encoder.down_blocks.", i, ".resnets.0.conv1.weight")); ++i)
        c.block_out_channels.push_back(get(str("encoder.down_blocks.", i, ".resnets.0.conv1.weight")).size(0));
    NUANCE_CHECK_CODE(!c.block_out_channels.empty(), NotFound, "AutoencoderKL: no encoder blocks found (expected '",
                      prefix, "encoder.down_blocks.0.resnets.0.conv1.weight')");
    c.layers_per_block = 0;
    while (has(str("encoder.down_blocks.0.resnets.", c.layers_per_block, ".conv1.weight"))) ++c.layers_per_block;

    const Tensor& dec_in = get("decoder.conv_in.weight");
    c.latent_channels = dec_in.size(1);
    const int64_t enc_out = get("encoder.conv_out.weight").size(0);
    NUANCE_CHECK(enc_out == 2 * c.latent_channels, "AutoencoderKL: encoder.conv_out has ", enc_out,
                 " output channels, expected 2 x ", c.latent_channels, " latent channels (mean and logvar)");
    c.out_channels = get("decoder.conv_out.weight").size(0);
    c.use_quant_conv = has("quant_conv.weight");
    c.use_post_quant_conv = has("post_quant_conv.weight");
    // Legacy names count too, so such a file fails loudly in load_module until rename_legacy_vae_attention is applied
    // (rather than loading without its attention).
    c.mid_block_attention =
        has("encoder.mid_block.attentions.0.to_q.weight") || has("encoder.mid_block.attentions.0.query.weight");

    if (groups > 0) {
        c.norm_groups = groups;
    } else {
        c.norm_groups = 0;
        for (int64_t g : {32, 16, 8, 4, 2, 1}) {
            bool all = true;
            for (int64_t ch : c.block_out_channels) all = all && ch % g == 0;
            if (all) { c.norm_groups = g; break; }
        }
        c.norm_groups_guessed = c.norm_groups != 32;
    }
    if (c.latent_channels == 16) {  // Flux; SD3 has the same shapes but 1.5305 / 0.0609 (see config.json)
        c.scaling_factor = 0.3611f;
        c.shift_factor = 0.1159f;
    }
    return c;
}

void AutoencoderKLConfig::apply_diffusers_config(const nlohmann::json& j) {
    NUANCE_CHECK(j.is_object(), "AutoencoderKL config: expected a JSON object");
    auto integer = [&](const char* key, int64_t& out) {
        if (!j.contains(key) || j[key].is_null()) return false;
        NUANCE_CHECK(j[key].is_number_integer(), "AutoencoderKL config: '", key, "' is not an integer");
        out = j[key].get<int64_t>();
        return true;
    };
    auto agree = [&](const char* key, int64_t detected) {
        int64_t v = 0;
        if (integer(key, v))
            NUANCE_CHECK(v == detected, "AutoencoderKL config: ", key, " = ", v, " but the weights have ", detected);
    };
    auto agree_bool = [&](const char* key, bool detected) {
        if (!j.contains(key) || j[key].is_null()) return;
        NUANCE_CHECK(j[key].is_boolean(), "AutoencoderKL config: '", key, "' is not a boolean");
        NUANCE_CHECK(j[key].get<bool>() == detected, "AutoencoderKL config: ", key, " = ", j[key].get<bool>(),
                     " but the weights say ", detected);
    };
    agree("in_channels", in_channels);
    agree("out_channels", out_channels);
    agree("latent_channels", latent_channels);
    agree("layers_per_block", layers_per_block);
    agree_bool("use_quant_conv", use_quant_conv);
    agree_bool("use_post_quant_conv", use_post_quant_conv);
    agree_bool("mid_block_add_attention", mid_block_attention);
    if (j.contains("block_out_channels") && !j["block_out_channels"].is_null()) {
        const auto& b = j["block_out_channels"];
        NUANCE_CHECK(b.is_array(), "AutoencoderKL config: 'block_out_channels' is not an array");
        std::vector<int64_t> v;
        for (const auto& e : b) {
            NUANCE_CHECK(e.is_number_integer(), "AutoencoderKL config: 'block_out_channels' holds a non-integer");
            v.push_back(e.get<int64_t>());
        }
        NUANCE_CHECK(v == block_out_channels, "AutoencoderKL config: block_out_channels = ", v,
                     " but the weights have ", block_out_channels);
    }
    int64_t g = 0;
    if (integer("norm_num_groups", g)) {
        NUANCE_CHECK(g > 0, "AutoencoderKL config: norm_num_groups = ", g);
        norm_groups = g;
        norm_groups_guessed = false;
    }
    auto number = [&](const char* key, float& out, float if_null) {
        if (!j.contains(key)) return;
        if (j[key].is_null()) { out = if_null; return; }
        NUANCE_CHECK(j[key].is_number(), "AutoencoderKL config: '", key, "' is not a number");
        out = (float)j[key].get<double>();
    };
    number("scaling_factor", scaling_factor, scaling_factor);
    number("shift_factor", shift_factor, 0.0f);
    NUANCE_CHECK(scaling_factor != 0.0f, "AutoencoderKL config: scaling_factor is 0");
}

// ---- posterior ----

DiagonalGaussian DiagonalGaussian::from_moments(const Tensor& moments) {
    NUANCE_CHECK(moments.dim() == 4 && moments.size(1) % 2 == 0,
                 "DiagonalGaussian: moments must be [N, 2C, h, w], got ", moments.shape());
    auto [mean, logvar] = chunk<2>(moments, 1);
    return {mean.f32().contiguous(), clamp(logvar, -30.0f, 20.0f)};
}

Tensor DiagonalGaussian::std() const { return exp(logvar * 0.5f); }

Tensor DiagonalGaussian::sample(const Tensor& eps) const {
    NUANCE_CHECK(eps.shape() == mean.shape(), "DiagonalGaussian::sample: eps ", eps.shape(), ", expected ",
                 mean.shape());
    return mean + std() * eps;
}

// ---- model ----

AutoencoderKL::AutoencoderKL(const AutoencoderKLConfig& c) : cfg_(c) {
    NUANCE_CHECK(!c.block_out_channels.empty() && c.layers_per_block >= 1 && c.latent_channels >= 1 &&
                     c.in_channels >= 1 && c.out_channels >= 1 && c.norm_groups >= 1,
                 "AutoencoderKL: bad config (blocks ", c.block_out_channels, ", layers_per_block ", c.layers_per_block,
                 ", latent ", c.latent_channels, ", groups ", c.norm_groups, ")");
    NUANCE_CHECK(c.block_out_channels.size() <= 16, "AutoencoderKL: ", c.block_out_channels.size(), " levels");
    for (int64_t ch : c.block_out_channels)
        NUANCE_CHECK(ch >= 1 && ch % c.norm_groups == 0, "AutoencoderKL: block width ", ch,
                     " is not divisible into ", c.norm_groups, " norm groups");
    encoder = VaeEncoder(c);
    decoder = VaeDecoder(c);
    if (c.use_quant_conv) quant_conv = Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1);
    if (c.use_post_quant_conv) post_quant_conv = Conv2d(c.latent_channels, c.latent_channels, 1);
}

void AutoencoderKL::visit(ParamVisitor& v) {
    v("encoder", encoder);
    v("decoder", decoder);
    if (cfg_.use_quant_conv) v("quant_conv", quant_conv);
    if (cfg_.use_post_quant_conv) v("post_quant_conv", post_quant_conv);
}

template <class V>
V run_encode_moments(const AutoencoderKL& m, const V& x) {
    const AutoencoderKLConfig& c = m.config();
    NUANCE_CHECK(x.defined() && x.dim() == 4 && x.size(1) == c.in_channels, "AutoencoderKL::encode: expected [N, ",
                 c.in_channels, ", H, W], got ", x.defined() ? x.shape() : Shape{});
    NUANCE_CHECK(m.encoder.conv_in.weight.defined(), "AutoencoderKL: weights are not loaded");
    const V h = run(m.encoder, compute_layout(x));  // [N, 2C, h, w], Tensor: channels-last inside (nn/apply.h)
    return (c.use_quant_conv ? apply(m.quant_conv, h) : h).contiguous();
}

template <class V>
V run_decode(const AutoencoderKL& m, const V& z) {
    const AutoencoderKLConfig& c = m.config();
    NUANCE_CHECK(z.defined() && z.dim() == 4 && z.size(1) == c.latent_channels,
                 "AutoencoderKL::decode: expected [N, ", c.latent_channels, ", h, w], got ",
                 z.defined() ? z.shape() : Shape{});
    NUANCE_CHECK(m.decoder.conv_in.weight.defined(), "AutoencoderKL: weights are not loaded");
    const V zc = compute_layout(z);
    return run(m.decoder, c.use_post_quant_conv ? apply(m.post_quant_conv, zc) : zc).contiguous();
}

template Tensor run_encode_moments(const AutoencoderKL&, const Tensor&);
template Var run_encode_moments(const AutoencoderKL&, const Var&);
template Tensor run_decode(const AutoencoderKL&, const Tensor&);
template Var run_decode(const AutoencoderKL&, const Var&);

Tensor AutoencoderKL::encode_moments(const Tensor& x) const { return run_encode_moments(*this, x); }

Tensor AutoencoderKL::decode(const Tensor& z) const { return run_decode(*this, z); }

Tensor AutoencoderKL::to_latents(const Tensor& z) const { return (z - cfg_.shift_factor) * cfg_.scaling_factor; }

Tensor AutoencoderKL::from_latents(const Tensor& latents) const {
    return div(latents, Tensor::scalar(cfg_.scaling_factor)) + cfg_.shift_factor;  // a true division, as diffusers
}

std::map<std::string, Tensor> rename_legacy_vae_attention(const std::map<std::string, Tensor>& tensors) {
    static const std::pair<const char*, const char*> kRenames[] = {
        {".attentions.0.query.", ".attentions.0.to_q."},
        {".attentions.0.key.", ".attentions.0.to_k."},
        {".attentions.0.value.", ".attentions.0.to_v."},
        {".attentions.0.proj_attn.", ".attentions.0.to_out.0."},
    };
    std::map<std::string, Tensor> out;
    for (const auto& [name, t] : tensors) {
        std::string n = name;
        for (const auto& [from, to] : kRenames) {
            const size_t at = n.find(from);
            if (at != std::string::npos) {
                n.replace(at, std::string(from).size(), to);
                break;
            }
        }
        out.emplace(std::move(n), t);
    }
    return out;
}

}  // namespace nuance
