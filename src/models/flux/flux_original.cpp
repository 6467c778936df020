#include "models/flux/flux_original.h"
#include "backends/backend.h"

#include <algorithm>
#include <set>

#include "ops/shape_ops.h"

namespace nuance {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

bool has_prefix_key(const std::map<std::string, Tensor>& t, const std::string& p) {
    auto it = t.lower_bound(p);
    return it != t.end() && starts_with(it->first, p);
}

// Renames shared by both directions: (BFL, diffusers) module paths (each with .weight and .bias, or .scale->.weight).
struct Rename { const char* bfl; const char* diffusers; };

constexpr Rename kTopLevel[] = {
    {"img_in", "x_embedder"},
    {"txt_in", "context_embedder"},
    {"time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"},
    {"time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"},
    {"vector_in.in_layer", "time_text_embed.text_embedder.linear_1"},
    {"vector_in.out_layer", "time_text_embed.text_embedder.linear_2"},
    {"guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"},
    {"guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"},
    {"final_layer.linear", "proj_out"},
};
constexpr Rename kDouble[] = {
    {"img_mod.lin", "norm1.linear"},
    {"txt_mod.lin", "norm1_context.linear"},
    {"img_attn.proj", "attn.to_out.0"},
    {"txt_attn.proj", "attn.to_add_out"},
    {"img_mlp.0", "ff.net.0.proj"},
    {"img_mlp.2", "ff.net.2"},
    {"txt_mlp.0", "ff_context.net.0.proj"},
    {"txt_mlp.2", "ff_context.net.2"},
};
constexpr Rename kDoubleNorms[] = {
    {"img_attn.norm.query_norm.scale", "attn.norm_q.weight"},
    {"img_attn.norm.key_norm.scale", "attn.norm_k.weight"},
    {"txt_attn.norm.query_norm.scale", "attn.norm_added_q.weight"},
    {"txt_attn.norm.key_norm.scale", "attn.norm_added_k.weight"},
};
constexpr Rename kSingle[] = {
    {"modulation.lin", "norm.linear"},
    {"linear2", "proj_out"},
};
constexpr Rename kSingleNorms[] = {
    {"norm.query_norm.scale", "attn.norm_q.weight"},
    {"norm.key_norm.scale", "attn.norm_k.weight"},
};

// Indices N present as `<prefix>N.` keys, checked to run 0..n-1 without holes (a hole is a broken file).
int64_t block_count(const std::map<std::string, Tensor>& t, const std::string& prefix, const std::string& source) {
    std::set<int64_t> seen;
    for (auto it = t.lower_bound(prefix); it != t.end() && starts_with(it->first, prefix); ++it) {
        const std::string rest = it->first.substr(prefix.size());
        const size_t dot = rest.find('.');
        const std::string idx = rest.substr(0, dot);
        NUANCE_CHECK(!idx.empty() && idx.size() <= 6 && std::all_of(idx.begin(), idx.end(), ::isdigit) &&
                         dot != std::string::npos,
                     source, ": unexpected Flux key '", it->first, "'");
        seen.insert(std::stoll(idx));
    }
    const int64_t n = (int64_t)seen.size();
    NUANCE_CHECK(seen.empty() || *seen.rbegin() == n - 1, source, ": ", prefix, "* block indices are not 0..", n - 1,
                 " (highest is ", seen.empty() ? 0 : *seen.rbegin(), ")");
    return n;
}

// Splits w (rows) into parts of the given row counts: views.
std::vector<Tensor> split_rows(const Tensor& w, const std::vector<int64_t>& rows) {
    std::vector<Tensor> out;
    int64_t at = 0;
    for (const int64_t r : rows) {
        out.push_back(w.narrow(0, at, r));
        at += r;
    }
    return out;
}

// Swaps the two row halves of a [2D, ...] tensor (the final adaLN's (shift, scale) <-> (scale, shift)).
Tensor swap_halves(const Tensor& w) {
    const int64_t h = w.size(0) / 2;
    const Tensor v = dequantize_weight(w);  // an FP8 / block-quantized weight: its values (the rows move)
    return cat({v.narrow(0, h, h), v.narrow(0, 0, h)}, 0).contiguous();
}

}  // namespace

bool find_flux_bfl_prefix(const std::map<std::string, Tensor>& t, std::string* prefix) {
    for (const std::string p : {"", "model.diffusion_model."}) {
        if (t.count(p + "img_in.weight") || has_prefix_key(t, p + "double_blocks.") ||
            has_prefix_key(t, p + "single_blocks.")) {
            if (prefix) *prefix = p;
            return true;
        }
    }
    return false;
}

bool find_flux_diffusers_prefix(const std::map<std::string, Tensor>& t, std::string* prefix) {
    for (const std::string p : {"", "transformer.", "model.diffusion_model."}) {
        if (t.count(p + "x_embedder.weight") &&
            (has_prefix_key(t, p + "transformer_blocks.") || has_prefix_key(t, p + "single_transformer_blocks."))) {
            if (prefix) *prefix = p;
            return true;
        }
    }
    return false;
}

std::map<std::string, Tensor> flux_bfl_to_diffusers(const std::map<std::string, Tensor>& t, const std::string& prefix,
                                                    const std::string& source,
                                                    std::map<std::string, std::string>* origin) {
    std::map<std::string, Tensor> out;
    auto note = [&](const std::string& dif, const std::string& bfl) {
        if (origin) (*origin)[dif] = prefix + bfl;
    };
    std::set<std::string> used;
    auto get = [&](const std::string& k) -> const Tensor* {
        auto it = t.find(prefix + k);
        if (it == t.end()) return nullptr;
        used.insert(it->first);
        return &it->second;
    };
    // weight + bias of a module (either may be absent: load_module reports what the model misses).
    auto rename = [&](const std::string& bfl, const std::string& dif) {
        for (const char* s : {".weight", ".bias"})
            if (const Tensor* w = get(bfl + s)) {
                out[dif + s] = *w;
                note(dif + s, bfl + s);
            }
    };
    auto rename_one = [&](const std::string& bfl, const std::string& dif) {
        if (const Tensor* w = get(bfl)) {
            out[dif] = *w;
            note(dif, bfl);
        }
    };
    // Rows of a fused weight/bias split into parts; the shapes are checked here since a split cannot be undone.
    auto split = [&](const std::string& bfl, const std::vector<std::string>& difs, auto rows_of) {
        for (const char* s : {".weight", ".bias"}) {
            const Tensor* w = get(bfl + s);
            if (!w) continue;
            NUANCE_CHECK(w->dim() >= 1, source, ": Flux tensor '", prefix, bfl, s, "' has no rows (", w->shape(), ")");
            const std::vector<int64_t> rows = rows_of(w->size(0), prefix + bfl + s);
            const auto parts = split_rows(*w, rows);
            int64_t at = 0;
            for (size_t i = 0; i < difs.size(); ++i) {
                out[difs[i] + s] = parts[i];
                note(difs[i] + s, str(bfl, s, " rows ", at, "..", at + rows[i] - 1));
                at += rows[i];
            }
        }
    };

    // guidance_in is all-or-nothing: its presence is what makes a file Flux-dev.
    int guidance_parts = 0;
    for (const char* k : {"guidance_in.in_layer.weight", "guidance_in.in_layer.bias", "guidance_in.out_layer.weight",
                          "guidance_in.out_layer.bias"})
        guidance_parts += t.count(prefix + k) ? 1 : 0;
    if (guidance_parts > 0)
        for (const char* k : {"guidance_in.in_layer.weight", "guidance_in.in_layer.bias",
                              "guidance_in.out_layer.weight", "guidance_in.out_layer.bias"})
            NUANCE_CHECK(t.count(prefix + k), source, ": Flux-dev file without ", prefix, k, " (it has ",
                         guidance_parts, " of guidance_in's 4 tensors)");

    for (const auto& r : kTopLevel) rename(r.bfl, r.diffusers);
    // final_layer.adaLN_modulation.1: BFL (shift, scale) -> diffusers norm_out.linear (scale, shift)
    for (const char* s : {".weight", ".bias"})
        if (const Tensor* w = get(std::string("final_layer.adaLN_modulation.1") + s)) {
            NUANCE_CHECK(w->dim() >= 1 && w->size(0) % 2 == 0, source, ": Flux tensor '", prefix,
                         "final_layer.adaLN_modulation.1", s, "': expected an even number of rows (shift, scale), got ",
                         w->shape());
            out[std::string("norm_out.linear") + s] = swap_halves(*w);
            note(std::string("norm_out.linear") + s, std::string("final_layer.adaLN_modulation.1") + s);
        }

    const int64_t nd = block_count(t, prefix + "double_blocks.", source);
    for (int64_t i = 0; i < nd; ++i) {
        const std::string b = "double_blocks." + std::to_string(i) + ".";
        const std::string d = "transformer_blocks." + std::to_string(i) + ".";
        for (const auto& r : kDouble) rename(b + r.bfl, d + r.diffusers);
        for (const auto& r : kDoubleNorms) rename_one(b + r.bfl, d + r.diffusers);
        auto thirds = [&](int64_t rows, const std::string& key) {
            NUANCE_CHECK(rows % 3 == 0, source, ": Flux tensor '", key, "': ", rows,
                         " rows do not split into q, k, v (not a multiple of 3)");
            return std::vector<int64_t>{rows / 3, rows / 3, rows / 3};
        };
        split(b + "img_attn.qkv", {d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"}, thirds);
        split(b + "txt_attn.qkv", {d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"}, thirds);
    }

    const int64_t ns = block_count(t, prefix + "single_blocks.", source);
    for (int64_t i = 0; i < ns; ++i) {
        const std::string b = "single_blocks." + std::to_string(i) + ".";
        const std::string d = "single_transformer_blocks." + std::to_string(i) + ".";
        for (const auto& r : kSingle) rename(b + r.bfl, d + r.diffusers);
        for (const auto& r : kSingleNorms) rename_one(b + r.bfl, d + r.diffusers);
        // linear1 = (q, k, v, mlp) rows; D from linear2 ([D, D + mlp]).
        const Tensor* l2 = get(b + "linear2.weight");
        NUANCE_CHECK(l2 && l2->dim() == 2, source, ": Flux single block ", i, " has no 2-D ", prefix, b,
                     "linear2.weight", l2 ? " (got " + shape_str(l2->shape()) + ")" : std::string());
        const int64_t D = l2->size(0), mlp = l2->size(1) - D;
        split(b + "linear1", {d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"},
              [&](int64_t rows, const std::string& key) {
                  NUANCE_CHECK(mlp > 0 && rows == 3 * D + mlp, source, ": Flux tensor '", key, "': ", rows,
                               " rows, but linear2.weight ", l2->shape(), " needs 3 x ", D, " + ", mlp, " = ",
                               3 * D + mlp, " (q, k, v, mlp)");
                  return std::vector<int64_t>{D, D, D, mlp};
              });
    }

    std::vector<std::string> unknown;
    for (auto it = t.lower_bound(prefix); it != t.end() && starts_with(it->first, prefix); ++it)
        if (!used.count(it->first)) unknown.push_back(it->first);
    if (!unknown.empty()) {
        std::string list;
        for (size_t i = 0; i < unknown.size() && i < 5; ++i) list += (i ? ", '" : "'") + unknown[i] + "'";
        if (unknown.size() > 5) list += str(" and ", unknown.size() - 5, " more");
        fail(ErrorCode::InvalidArgument, source, ": ", unknown.size(), " tensor(s) the Flux (BFL layout) key map does "
             "not know: ", list);
    }
    return out;
}

std::string flux_bfl_key_of(const std::string& key) {
    const size_t dot = key.rfind('.');
    if (dot == std::string::npos) return "";
    const std::string mod = key.substr(0, dot), suffix = key.substr(dot);  // ".weight" / ".bias"
    for (const auto& r : kTopLevel)
        if (mod == r.diffusers) return r.bfl + suffix;
    if (mod == "norm_out.linear") return "final_layer.adaLN_modulation.1" + suffix;
    // "<blocks>.N.<rest>"
    for (const bool dbl : {true, false}) {
        const std::string p = dbl ? "transformer_blocks." : "single_transformer_blocks.";
        if (!starts_with(key, p)) continue;
        const size_t d2 = key.find('.', p.size());
        if (d2 == std::string::npos) return "";
        const std::string idx = key.substr(p.size(), d2 - p.size()), rest = key.substr(d2 + 1);
        const std::string b = (dbl ? "double_blocks." : "single_blocks.") + idx + ".";
        const std::string rmod = rest.substr(0, rest.rfind('.'));
        for (const auto& r : dbl ? std::vector<Rename>(std::begin(kDouble), std::end(kDouble))
                                 : std::vector<Rename>(std::begin(kSingle), std::end(kSingle)))
            if (rmod == r.diffusers) return b + r.bfl + suffix;
        for (const auto& r : dbl ? std::vector<Rename>(std::begin(kDoubleNorms), std::end(kDoubleNorms))
                                 : std::vector<Rename>(std::begin(kSingleNorms), std::end(kSingleNorms)))
            if (rest == r.diffusers) return b + r.bfl;
        if (dbl && (rmod == "attn.to_q" || rmod == "attn.to_k" || rmod == "attn.to_v")) return b + "img_attn.qkv" + suffix;
        if (dbl && rmod.rfind("attn.add_", 0) == 0) return b + "txt_attn.qkv" + suffix;
        if (!dbl && (rmod == "attn.to_q" || rmod == "attn.to_k" || rmod == "attn.to_v" || rmod == "proj_mlp"))
            return b + "linear1" + suffix;
    }
    return "";
}

std::vector<std::pair<std::string, Tensor>> flux_diffusers_to_bfl(const std::map<std::string, Tensor>& t) {
    std::map<std::string, Tensor> out;
    auto rename = [&](const std::string& dif, const std::string& bfl) {
        for (const char* s : {".weight", ".bias"}) {
            auto it = t.find(dif + s);
            if (it != t.end()) out[bfl + s] = it->second;
        }
    };
    auto rename_one = [&](const std::string& dif, const std::string& bfl) {
        auto it = t.find(dif);
        if (it != t.end()) out[bfl] = it->second;
    };
    auto fuse = [&](const std::vector<std::string>& difs, const std::string& bfl) {
        for (const char* s : {".weight", ".bias"}) {
            std::vector<Tensor> parts;
            for (const auto& d : difs) {
                auto it = t.find(d + s);
                NUANCE_CHECK(it != t.end(), "Flux to BFL layout: missing tensor '", d, s, "'");
                parts.push_back(it->second);
            }
            out[bfl + s] = cat(parts, 0);
        }
    };
    for (const auto& r : kTopLevel) rename(r.diffusers, r.bfl);
    for (const char* s : {".weight", ".bias"}) {
        auto it = t.find(std::string("norm_out.linear") + s);
        if (it != t.end()) out[std::string("final_layer.adaLN_modulation.1") + s] = swap_halves(it->second);
    }
    for (int64_t i = 0; t.count("transformer_blocks." + std::to_string(i) + ".norm1.linear.weight"); ++i) {
        const std::string b = "double_blocks." + std::to_string(i) + ".";
        const std::string d = "transformer_blocks." + std::to_string(i) + ".";
        for (const auto& r : kDouble) rename(d + r.diffusers, b + r.bfl);
        for (const auto& r : kDoubleNorms) rename_one(d + r.diffusers, b + r.bfl);
        fuse({d + "attn.to_q", d + "attn.to_k", d + "attn.to_v"}, b + "img_attn.qkv");
        fuse({d + "attn.add_q_proj", d + "attn.add_k_proj", d + "attn.add_v_proj"}, b + "txt_attn.qkv");
    }
    for (int64_t i = 0; t.count("single_transformer_blocks." + std::to_string(i) + ".norm.linear.weight"); ++i) {
        const std::string b = "single_blocks." + std::to_string(i) + ".";
        const std::string d = "single_transformer_blocks." + std::to_string(i) + ".";
        for (const auto& r : kSingle) rename(d + r.diffusers, b + r.bfl);
        for (const auto& r : kSingleNorms) rename_one(d + r.diffusers, b + r.bfl);
        fuse({d + "attn.to_q", d + "attn.to_k", d + "attn.to_v", d + "proj_mlp"}, b + "linear1");
    }
    return {out.begin(), out.end()};
}

}  // namespace nuance
