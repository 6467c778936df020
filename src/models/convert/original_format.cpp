// Splitting an original single-file checkpoint into components (and back); family detection.
// The per-component key maps live in original_{unet,vae,clip}.cpp.
#include "models/convert/original_format.h"

#include <cstring>

#include "backends/backend.h"
#include "core/error.h"
#include "core/quantized_weight.h"
#include "models/convert/original_parts.h"

namespace nuance {
namespace original_format {

std::vector<std::string> split_key(const std::string& key) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
        size_t dot = key.find('.', start);
        parts.push_back(key.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return parts;
}

std::string join_key(const std::vector<std::string>& parts, size_t from, size_t to) {
    std::string s;
    for (size_t i = from; i < parts.size() && i < to; ++i) {
        if (i > from) s += '.';
        s += parts[i];
    }
    return s;
}

int64_t parse_index(std::string_view s) {
    if (s.empty() || s.size() > 9) return -1;  // block indices are small; refuse absurd ones
    int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    if (s.size() > 1 && s[0] == '0') return -1;  // "01" is not a module index
    return v;
}

std::string index_ranges(const std::set<int64_t>& indices) {
    std::string s;
    for (auto it = indices.begin(); it != indices.end();) {
        int64_t a = *it, b = a;
        while (++it != indices.end() && *it == b + 1) ++b;
        s += str(s.empty() ? "" : ", ", a);
        if (b > a) s += str("-", b);
    }
    return s.empty() ? "none" : s;
}

void check_contiguous(const std::string& what, const std::set<int64_t>& indices) {
    int64_t expect = 0;
    for (int64_t i : indices) {
        NUANCE_CHECK_CODE(i == expect, Unsupported, what, ": index ", expect, " is missing (found ",
                          index_ranges(indices), ")");
        ++expect;
    }
}

void put(TensorMap& out, const std::string& key, const Tensor& t) {
    NUANCE_CHECK_CODE(out.emplace(key, t).second, Internal, "checkpoint conversion: two tensors map to '", key, "'");
}

Tensor concat_rows(const std::vector<Tensor>& ts) {
    NUANCE_ASSERT(!ts.empty());
    for (const Tensor& t : ts)
        if (is_quantized_storage(t)) {  // FP8 / block-quantized parts (an FP8 file): the fused tensor of their values
            std::vector<Tensor> v;
            for (const Tensor& u : ts) v.push_back(dequantize_weight(u));
            return concat_rows(v);
        }
    Shape shape = ts[0].shape();
    NUANCE_CHECK(!shape.empty(), "concat_rows: 0-d tensor");
    shape[0] = 0;
    for (const Tensor& t : ts) {
        Shape s = t.shape();
        NUANCE_CHECK(t.dtype() == ts[0].dtype() && s.size() == shape.size() &&
                         std::equal(s.begin() + 1, s.end(), ts[0].shape().begin() + 1),
                     "concat_rows: ", t.str(), " does not stack with ", ts[0].str());
        shape[0] += s[0];
    }
    Tensor out = Tensor::empty(shape, ts[0].dtype());
    auto* dst = static_cast<uint8_t*>(out.raw());
    for (const Tensor& t : ts) {
        Tensor c = t.contiguous();
        if (c.nbytes()) std::memcpy(dst, c.raw(), c.nbytes());
        dst += c.nbytes();
    }
    return out;
}

}  // namespace original_format

namespace {

using original_format::TensorMap;

constexpr const char* kUnet = "model.diffusion_model.";
constexpr const char* kVae = "first_stage_model.";

bool has_prefix(const TensorMap& t, const std::string& prefix) {
    auto it = t.lower_bound(prefix);
    return it != t.end() && it->first.starts_with(prefix);
}

// "model.diffusion_model", "first_stage_model", "conditioner.embedders" ... with counts, for error messages.
std::string prefixes_found(const TensorMap& t) {
    std::map<std::string, size_t> counts;
    for (const auto& [key, v] : t) {
        auto parts = original_format::split_key(key);
        bool two = parts.size() > 2 && (parts[0] == "model" || parts[0] == "conditioner" ||
                                         parts[0] == "cond_stage_model");
        counts[original_format::join_key(parts, 0, two ? 2 : 1) + (parts.size() > 1 ? ".*" : "")]++;
    }
    std::string s;
    size_t shown = 0;
    for (const auto& [p, n] : counts) {
        if (shown++ == 12) {
            s += str(", ... (", counts.size() - 12, " more)");
            break;
        }
        s += str(s.empty() ? "" : ", ", p, " (", n, ")");
    }
    return s.empty() ? "no tensors at all" : s;
}

std::string detect_family(const TensorMap& t) {
    if (has_prefix(t, "conditioner.embedders.0.model.") && !has_prefix(t, "conditioner.embedders.1."))
        return "sdxl_refiner";  // OpenCLIP bigG only, ADM input 2560 (pooled 1280 + 5 time ids x 256)
    if (has_prefix(t, "conditioner.embedders.1.")) return "sdxl";
    if (has_prefix(t, "cond_stage_model.model.")) return "sd2";
    if (has_prefix(t, "cond_stage_model.transformer.")) return "sd1";
    // No text encoder in the file: SDXL's UNet is the one with an ADM ("text_time") embedding.
    if (has_prefix(t, std::string(kUnet) + "label_emb.0.")) return "sdxl";
    // UNet-only file: the cross-attention context width names the text encoder it was trained with.
    for (const auto& [key, v] : t) {
        if (key.starts_with(kUnet) && key.ends_with(".attn2.to_k.weight") && v.dim() == 2) {
            if (v.size(1) == 768) return "sd1";
            if (v.size(1) == 1024) return "sd2";
            break;
        }
    }
    return "unknown";
}

}  // namespace

bool is_original_layout(const std::map<std::string, Tensor>& t) { return has_prefix(t, kUnet); }

ComponentWeights split_original(const std::map<std::string, Tensor>& t) {
    NUANCE_CHECK(is_original_layout(t), "not an original (CompVis/SGM) single-file checkpoint: no '", kUnet,
                 "*' tensors; found ", prefixes_found(t));
    enum Source { kUnetSrc, kVaeSrc, kHf, kOpenClipTe1, kOpenClipTe2, kNumSources };
    TensorMap src[kNumSources];
    std::string src_prefix[kNumSources];
    auto take = [&](Source s, const std::string& prefix, const std::string& key, const Tensor& v) {
        NUANCE_CHECK_CODE(src_prefix[s].empty() || src_prefix[s] == prefix, Unsupported,
                          "checkpoint has two text encoders of one kind: '", src_prefix[s], "*' and '", prefix, "*'");
        src_prefix[s] = prefix;
        src[s][key.substr(prefix.size())] = v;
    };
    for (const auto& [key, v] : t) {
        if (key.starts_with(kUnet)) {
            take(kUnetSrc, kUnet, key, v);
        } else if (key.starts_with(kVae)) {
            take(kVaeSrc, kVae, key, v);
        } else if (key.starts_with("cond_stage_model.transformer.")) {
            take(kHf, "cond_stage_model.transformer.", key, v);
        } else if (key.starts_with("cond_stage_model.model.")) {
            take(kOpenClipTe1, "cond_stage_model.model.", key, v);
        } else if (key.starts_with("conditioner.embedders.")) {
            auto parts = original_format::split_key(key);
            if (parts.size() < 5 || original_format::parse_index(parts[2]) < 0) continue;
            std::string prefix = original_format::join_key(parts, 0, 4) + ".";
            if (parts[3] == "transformer") take(kHf, prefix, key, v);
            else if (parts[3] == "model") take(kOpenClipTe2, prefix, key, v);
            // other embedders (SDXL's ConcatTimestepEmbedderND) have no weights
        }
        // everything else (model_ema.*, betas, alphas_cumprod, ...) is not part of the inference model
    }
    ComponentWeights cw;
    cw.family = detect_family(t);
    cw.unet = original_format::unet_from_original(src[kUnetSrc]);
    if (!src[kVaeSrc].empty()) cw.vae = original_format::vae_from_original(src[kVaeSrc]);
    if (!src[kHf].empty()) cw.text_encoder = original_format::clip_from_hf(src[kHf]);
    NUANCE_CHECK_CODE(src[kHf].empty() || src[kOpenClipTe1].empty(), Unsupported,
                      "checkpoint has both '", src_prefix[kHf], "*' and '", src_prefix[kOpenClipTe1], "*'");
    if (!src[kOpenClipTe1].empty()) cw.text_encoder = original_format::clip_from_open_clip(src[kOpenClipTe1]);
    if (!src[kOpenClipTe2].empty()) cw.text_encoder_2 = original_format::clip_from_open_clip(src[kOpenClipTe2]);
    return cw;
}

std::vector<std::pair<std::string, Tensor>> to_original(const ComponentWeights& cw) {
    const std::string& f = cw.family;
    NUANCE_CHECK(f == "sd1" || f == "sd2" || f == "sdxl" || f == "sdxl_refiner" || f == "unknown",
                 "to_original: unknown family '", f, "' (expected sd1, sd2, sdxl, sdxl_refiner or unknown)");
    TensorMap out;
    auto add = [&](const std::string& prefix, const TensorMap& m) {
        for (const auto& [k, v] : m) original_format::put(out, prefix + k, v);
    };
    add(kUnet, original_format::unet_to_original(cw.unet));
    add(kVae, original_format::vae_to_original(cw.vae));
    if (f == "sdxl" || f == "sdxl_refiner") {
        NUANCE_CHECK(f == "sdxl" || cw.text_encoder.empty(),
                     "to_original: an sdxl_refiner checkpoint has only text_encoder_2 (OpenCLIP bigG), but "
                     "text_encoder has ", cw.text_encoder.size(), " tensors");
        add("conditioner.embedders.0.transformer.", cw.text_encoder);
        add(f == "sdxl" ? "conditioner.embedders.1.model." : "conditioner.embedders.0.model.",
            original_format::clip_to_open_clip(cw.text_encoder_2));
    } else {
        NUANCE_CHECK(cw.text_encoder_2.empty(), "to_original: family '", f, "' has a single text encoder, but "
                     "text_encoder_2 has ", cw.text_encoder_2.size(), " tensors");
        if (f == "sd2") add("cond_stage_model.model.", original_format::clip_to_open_clip(cw.text_encoder));
        else add("cond_stage_model.transformer.", cw.text_encoder);
    }
    return {out.begin(), out.end()};
}

}  // namespace nuance
