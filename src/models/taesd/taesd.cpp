#include "models/taesd/taesd.h"

#include <algorithm>
#include <cmath>

#include "io/json_file.h"
#include "io/weights.h"
#include "ops/ops.h"

namespace nuance {

// ---- layers -------------------------------------------------------------------------------------------------------

TaeLayer TaeLayer::make_conv(int64_t in, int64_t out, int64_t stride, bool bias) {
    TaeLayer l;
    l.kind = Conv;
    l.conv = Conv2d(in, out, 3, stride, 1, bias);
    return l;
}

TaeLayer TaeLayer::make_block(int64_t in, int64_t out) {
    TaeLayer l;
    l.kind = Block;
    l.c0 = Conv2d(in, out, 3, 1, 1);
    l.c2 = Conv2d(out, out, 3, 1, 1);
    l.c4 = Conv2d(out, out, 3, 1, 1);
    l.has_skip = in != out;
    if (l.has_skip) l.skip = Conv2d(in, out, 1, 1, 0, false);
    return l;
}

TaeLayer TaeLayer::make(Kind k) {
    TaeLayer l;
    l.kind = k;
    return l;
}

Tensor TaeLayer::operator()(const Tensor& x) const {
    switch (kind) {
        case Conv: return conv(x);
        case Relu: return relu(x);
        case Upsample: return interpolate_nearest(x, x.size(2) * 2, x.size(3) * 2);
        case Block: {
            const Tensor h = c4(relu(c2(relu(c0(x)))));
            return relu(h + (has_skip ? skip(x) : x));
        }
    }
    return x;
}

void TaeLayer::visit(ParamVisitor& v) {
    if (kind == Block) {  // convs are named by TaeStack ("{i}.weight")
        v("conv.0", c0);
        v("conv.2", c2);
        v("conv.4", c4);
        if (has_skip) v("skip", skip);
    }
}

Tensor TaeStack::operator()(const Tensor& x) const {
    Tensor h = x;
    for (const auto& l : layers) h = l(h);
    return h;
}

void TaeStack::visit(ParamVisitor& v) {
    for (size_t i = 0; i < layers.size(); ++i) {
        if (layers[i].kind != TaeLayer::Conv && layers[i].kind != TaeLayer::Block) continue;
        const std::string idx = std::to_string(i + (size_t)index_offset);
        if (layers[i].kind == TaeLayer::Conv) {  // "{i}.weight", not "{i}..weight"
            v(idx + ".weight", layers[i].conv.weight);
            if (layers[i].conv.has_bias) v(idx + ".bias", layers[i].conv.bias);
        } else {
            v(idx, layers[i]);
        }
    }
}

// ---- the model ----------------------------------------------------------------------------------------------------

TinyAutoencoder::TinyAutoencoder(const TinyAutoencoderConfig& cfg) : cfg_(cfg) {
    NUANCE_CHECK(cfg.encoder_blocks.size() == 4 && cfg.decoder_blocks.size() == 4,
                 "tiny autoencoder: 4 encoder and decoder stages expected");
    const int64_t we = cfg.encoder_width, wd = cfg.decoder_width, C = cfg.latent_channels;
    auto& e = encoder.layers;
    for (size_t s = 0; s < 4; ++s) {
        e.push_back(s == 0 ? TaeLayer::make_conv(3, we, 1, true) : TaeLayer::make_conv(we, we, 2, false));
        for (int64_t b = 0; b < cfg.encoder_blocks[s]; ++b) e.push_back(TaeLayer::make_block(we, we));
    }
    e.push_back(TaeLayer::make_conv(we, C, 1, true));
    auto& d = decoder.layers;
    decoder.index_offset = 1;  // the original Sequential starts with the Clamp
    d.push_back(TaeLayer::make_conv(C, wd, 1, true));
    d.push_back(TaeLayer::make(TaeLayer::Relu));
    for (size_t s = 0; s < 4; ++s) {
        for (int64_t b = 0; b < cfg.decoder_blocks[s]; ++b) d.push_back(TaeLayer::make_block(wd, wd));
        if (s < 3) {
            d.push_back(TaeLayer::make(TaeLayer::Upsample));
            d.push_back(TaeLayer::make_conv(wd, wd, 1, false));
        }
    }
    d.push_back(TaeLayer::make_conv(wd, 3, 1, true));
}

std::string TinyAutoencoder::describe() const {
    const int64_t C = cfg_.latent_channels;
    const char* kind = C == 4 ? "TAESD/TAESDXL" : C == 16 ? "TAESD3/TAEF1" : "tiny autoencoder";
    return str(kind, " '", source_, "' (", C, "-channel latents)");
}

Tensor TinyAutoencoder::encode(const Tensor& image) const {
    NUANCE_CHECK(has_encoder_, "tiny autoencoder '", source_, "' has no encoder weights (load the *_encoder file too)");
    NUANCE_CHECK(image.dim() == 4 && image.size(1) == 3 && image.size(2) % 8 == 0 && image.size(3) % 8 == 0,
                 "tiny autoencoder encode: image ", image.shape(), " is not [N, 3, H, W] with H, W multiples of 8");
    return encoder((image.f32() + 1.0f) * 0.5f);
}

Tensor TinyAutoencoder::decode(const Tensor& latents) const {
    NUANCE_CHECK(has_decoder_, "tiny autoencoder '", source_, "' has no decoder weights (load the *_decoder file)");
    NUANCE_CHECK(latents.dim() == 4 && latents.size(1) == cfg_.latent_channels, "tiny autoencoder '", source_,
                 "' decodes [N, ", cfg_.latent_channels, ", h, w] latents, got ", latents.shape());
    NUANCE_CHECK(latents.size(2) > 0 && latents.size(3) > 0 && latents.size(2) <= 2048 && latents.size(3) <= 2048,
                 "tiny autoencoder decode: latent size ", latents.shape(), " out of range");
    const Tensor z = tanh(latents.f32() / 3.0f) * 3.0f;
    return decoder(z) * 2.0f - 1.0f;
}

Tensor TinyAutoencoder::scale_latents(const Tensor& latents) const {
    return clamp(latents.f32() / (2.0f * cfg_.latent_magnitude) + cfg_.latent_shift, 0.0f, 1.0f);
}

Tensor TinyAutoencoder::unscale_latents(const Tensor& scaled) const {
    return (scaled.f32() - cfg_.latent_shift) * (2.0f * cfg_.latent_magnitude);
}

// ---- loading ------------------------------------------------------------------------------------------------------

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// "12.rest" -> (12, "rest"); false when the name does not start with a bounded decimal index.
bool split_index(const std::string& k, int64_t& idx, std::string& rest) {
    size_t i = 0;
    idx = 0;
    while (i < k.size() && i < 4 && k[i] >= '0' && k[i] <= '9') idx = idx * 10 + (k[i++] - '0');
    if (i == 0 || i >= k.size() || k[i] != '.') return false;
    rest = k.substr(i + 1);
    return true;
}

// Reindexes "<prefix>{i}.rest" into "{i + shift}.rest" of `out`; returns how many keys it took.
size_t take(const std::map<std::string, Tensor>& in, const std::string& prefix, int shift,
            std::map<std::string, Tensor>& out) {
    size_t n = 0;
    for (const auto& [k, t] : in) {
        if (!starts_with(k, prefix)) continue;
        int64_t idx;
        std::string rest;
        if (!split_index(k.substr(prefix.size()), idx, rest)) continue;
        out[std::to_string(idx + shift) + "." + rest] = t;
        ++n;
    }
    return n;
}

int64_t conv_dim(const std::map<std::string, Tensor>& m, const std::string& key, int d, const std::string& src) {
    const auto it = m.find(key);
    NUANCE_CHECK(it != m.end(), src, " is missing tensor '", key, "' of a tiny autoencoder");
    NUANCE_CHECK(it->second.dim() == 4, src, ": tensor '", key, "' is ", it->second.shape(), ", not a conv weight");
    const int64_t v = it->second.size(d);
    NUANCE_CHECK(v >= 1 && v <= 4096, src, ": tensor '", key, "' has size ", v, " in dim ", d, " (out of range)");
    return v;
}

}  // namespace

std::unique_ptr<TinyAutoencoder> TinyAutoencoder::from_tensors(const std::map<std::string, Tensor>& tensors,
                                                               const std::string& source) {
    std::map<std::string, Tensor> enc, dec;
    size_t used = take(tensors, "encoder.layers.", 0, enc) + take(tensors, "decoder.layers.", 1, dec);
    if (used == 0) used = take(tensors, "encoder.", 0, enc) + take(tensors, "decoder.", 0, dec);  // taesd.py TAESD
    if (used == 0) {  // one bare original nn.Sequential: the encoder starts with conv(3, w), the decoder with a Clamp
        std::map<std::string, Tensor> bare;
        used = take(tensors, "", 0, bare);
        if (bare.count("0.weight")) enc = std::move(bare);
        else if (bare.count("1.weight")) dec = std::move(bare);
        else used = 0;
    }
    if (used == 0) {
        std::string ex;
        size_t n = 0;
        for (auto it = tensors.begin(); it != tensors.end() && n < 3; ++it, ++n) ex += (n ? ", '" : "'") + it->first + "'";
        fail(ErrorCode::InvalidArgument, source, " is not a tiny autoencoder (TAESD/TAESDXL/TAESD3/TAEF1): expected "
             "'encoder.layers.*'/'decoder.layers.*' (diffusers AutoencoderTiny) or the original taesd_decoder/"
             "taesd_encoder keys ('1.weight', '3.conv.0.weight', ...); it has ", tensors.size(), " tensors",
             tensors.empty() ? std::string() : ", e.g. " + ex);
    }
    TinyAutoencoderConfig cfg;
    int64_t C = 0;
    if (!dec.empty()) {
        cfg.decoder_width = conv_dim(dec, "1.weight", 0, source);
        C = conv_dim(dec, "1.weight", 1, source);
    }
    if (!enc.empty()) {
        NUANCE_CHECK(conv_dim(enc, "0.weight", 1, source) == 3, source, ": the encoder's first conv takes ",
                     conv_dim(enc, "0.weight", 1, source), " channels, not 3 (RGB)");
        cfg.encoder_width = conv_dim(enc, "0.weight", 0, source);
        const int64_t ce = conv_dim(enc, "14.weight", 0, source);
        NUANCE_CHECK(C == 0 || ce == C, source, ": the encoder makes ", ce, "-channel latents but the decoder takes ", C);
        C = ce;
    }
    NUANCE_CHECK(C >= 1 && C <= 64, source, ": ", C, " latent channels is out of range");
    cfg.latent_channels = C;
    auto tae = std::make_unique<TinyAutoencoder>(cfg);
    tae->source_ = source;
    LoadOptions lo;
    lo.source = source;
    auto load_half = [&](TaeStack& s, const std::map<std::string, Tensor>& m, const char* half) {
        const std::vector<std::string> unused = load_module(s, m, lo);
        NUANCE_CHECK(unused.empty(), source, ": ", unused.size(), " ", half, " tensor(s) fit no layer of a tiny ",
                     "autoencoder, e.g. '", unused.empty() ? "" : unused.front(), "'");
    };
    if (!enc.empty()) load_half(tae->encoder, enc, "encoder");
    if (!dec.empty()) load_half(tae->decoder, dec, "decoder");
    tae->has_encoder_ = !enc.empty();
    tae->has_decoder_ = !dec.empty();
    return tae;
}

std::unique_ptr<TinyAutoencoder> TinyAutoencoder::load(const std::vector<std::string>& paths, const std::string& what) {
    NUANCE_CHECK(!paths.empty() && paths.size() <= 2, what, ": one tiny autoencoder file or folder, or its encoder and "
                 "decoder files, expected; got ", paths.size());
    std::map<std::string, Tensor> all;
    nlohmann::json config;
    std::vector<WeightFile> keep;  // the tensors may view the files' mappings
    std::string names;
    for (const std::string& p : paths) {
        std::string file = p;
        if (is_directory(p)) {  // diffusers AutoencoderTiny folder (config.json optional)
            file = find_first_file(p, {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                                       "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"});
            NUANCE_CHECK_CODE(!file.empty(), NotFound, what, " folder '", p, "' has no diffusion_pytorch_model.",
                              "safetensors (a diffusers AutoencoderTiny folder expected)");
            if (auto c = read_optional_json_object(p + "/config.json")) config = *c;
        }
        keep.push_back(load_weights(file));
        std::map<std::string, Tensor> one = keep.back().tensors;
        // Two original files: the encoder's and the decoder's bare keys collide; prefix them by what they are.
        if (paths.size() == 2 && (one.count("0.weight") || one.count("1.weight"))) {
            const std::string prefix = one.count("0.weight") ? "encoder." : "decoder.";
            std::map<std::string, Tensor> pre;
            for (auto& [k, t] : one) pre[prefix + k] = t;
            one = std::move(pre);
        }
        for (auto& [k, t] : one) {
            NUANCE_CHECK(all.emplace(k, t).second, what, ": tensor '", k, "' is in both '", paths[0], "' and '", p, "'");
        }
        names += (names.empty() ? "" : "' + '") + p;
    }
    auto tae = from_tensors(all, names);
    if (config.is_object()) {
        auto num = [&](const char* k, float& v) {
            if (config.contains(k) && config[k].is_number()) v = config[k].get<float>();
        };
        num("latent_magnitude", tae->cfg_.latent_magnitude);
        num("latent_shift", tae->cfg_.latent_shift);
        NUANCE_CHECK(std::isfinite(tae->cfg_.latent_magnitude) && tae->cfg_.latent_magnitude > 0 &&
                     std::isfinite(tae->cfg_.latent_shift), what, ": config.json latent_magnitude ",
                     tae->cfg_.latent_magnitude, " / latent_shift ", tae->cfg_.latent_shift, " out of range");
        if (config.contains("latent_channels") && config["latent_channels"].is_number_integer())
            NUANCE_CHECK(config["latent_channels"].get<int64_t>() == tae->cfg_.latent_channels, what,
                         ": config.json says latent_channels ", config["latent_channels"].get<int64_t>(),
                         " but the weights have ", tae->cfg_.latent_channels);
    }
    return tae;
}

void check_tae_matches(const TinyAutoencoder& tae, int64_t model_channels, const std::string& model) {
    NUANCE_CHECK(tae.config().latent_channels == model_channels, tae.describe(), " does not fit ", model, " (",
                 model_channels, "-channel latents): use ", model_channels == 16 ? "TAESD3 (SD3) or TAEF1 (Flux)"
                 : model_channels == 4 ? "TAESD (SD1/SD2) or TAESDXL (SDXL)" : "a tiny autoencoder of that latent space");
}

}  // namespace nuance
