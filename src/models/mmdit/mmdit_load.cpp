#include "models/mmdit/mmdit_load.h"

#include <set>

#include "io/json_file.h"
#include "io/weights.h"
#include "models/mmdit/mmdit_original.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

bool has_prefix(const TensorMap& t, const std::string& p) {
    auto it = t.lower_bound(p);
    return it != t.end() && it->first.starts_with(p);
}

bool is_diffusers_sd3(const TensorMap& t) {
    return t.count("pos_embed.proj.weight") && has_prefix(t, "transformer_blocks.0.attn.add_q_proj.");
}

// Bare original keys (joint_blocks.*, x_embedder.* without model.diffusion_model.): ComfyUI's saved diffusion model.
bool is_bare_original(const TensorMap& t) { return has_prefix(t, "joint_blocks.0.x_block.") && has_prefix(t, "x_embedder."); }

// "model.diffusion_model.*" ... "first_stage_model.*" with counts: what a file that is not an SD3 transformer holds.
std::string prefixes_found(const TensorMap& t) {
    std::map<std::string, size_t> counts;
    for (const auto& [k, v] : t) {
        size_t dot = k.find('.');
        if (k.starts_with("model.") && dot != std::string::npos) dot = k.find('.', dot + 1);
        counts[dot == std::string::npos ? k : k.substr(0, dot) + ".*"]++;
    }
    std::string s;
    size_t shown = 0;
    for (const auto& [p, n] : counts) {
        if (shown++ == 10) return s + str(", ... (", counts.size() - 10, " more)");
        s += str(s.empty() ? "" : ", ", p, " (", n, ")");
    }
    return s.empty() ? "no tensors" : s;
}

// The tensors detect() reads first: checked here so that a missing one is named in the file's own layout.
constexpr const char* kDetectKeys[] = {
    "pos_embed.proj.weight", "pos_embed.pos_embed", "proj_out.weight", "context_embedder.weight",
    "time_text_embed.timestep_embedder.linear_1.weight", "time_text_embed.text_embedder.linear_1.weight",
};

}  // namespace

bool is_sd3_transformer(const TensorMap& t) { return is_original_mmdit(t) || is_bare_original(t) || is_diffusers_sd3(t); }

SD3TransformerWeights read_sd3_transformer(const std::string& path) {
    SD3TransformerWeights w;
    std::string file = path;
    if (is_directory(path)) {
        const std::string dir = is_directory(path + "/transformer") ? path + "/transformer" : path;
        file = find_first_file(dir, {"diffusion_pytorch_model.safetensors",
                                     "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin"});
        NUANCE_CHECK_CODE(!file.empty(), NotFound, "SD3 diffusers folder '", dir,
                          "' has no diffusion_pytorch_model.safetensors (or .safetensors.index.json, .bin)");
        if (auto cfg = read_optional_json_object(dir + "/config.json")) {
            const auto cls = cfg->value("_class_name", nlohmann::json());
            NUANCE_CHECK(cls.is_null() || cls == "SD3Transformer2DModel", "'", dir, "/config.json': _class_name is ",
                         cls.dump(), ", expected \"SD3Transformer2DModel\"");
            w.config = std::move(*cfg);
        }
    }
    w.source = file;
    WeightFile wf = load_weights(file);
    if (is_original_mmdit(wf.tensors)) {
        w.original_layout = true;
        w.tensors = mmdit_from_original(wf.tensors);
    } else if (is_bare_original(wf.tensors)) {
        TensorMap prefixed;
        for (const auto& [k, v] : wf.tensors) prefixed.emplace(kMMDiTOriginalPrefix + k, v);
        w.original_layout = true;
        w.tensors = mmdit_from_original(prefixed);
    } else if (is_diffusers_sd3(wf.tensors)) {
        w.tensors = std::move(wf.tensors);
    } else {
        fail(ErrorCode::Unsupported, "'", file, "' is not an SD3 / SD3.5 transformer: expected ",
             kMMDiTOriginalPrefix, "joint_blocks.* (Stability's layout) or transformer_blocks.* with "
             "pos_embed.proj.weight (diffusers); found ", prefixes_found(wf.tensors));
    }
    return w;
}

std::unique_ptr<SD3Transformer2DModel> load_sd3_transformer(const SD3TransformerWeights& w, Precision p) {
    auto name_of = [&](const std::string& k) { return w.original_layout ? mmdit_original_name(k) : k; };
    const std::string src = "'" + w.source + "'";
    for (const char* k : kDetectKeys)
        NUANCE_CHECK(w.tensors.count(k), src, ": SD3 transformer without tensor '", name_of(k), "'");
    MMDiTConfig cfg;
    try {
        cfg = MMDiTConfig::detect(w.tensors);
        if (!w.config.is_null()) cfg.apply_json(w.config);
    } catch (const Error& e) {
        fail(e.code(), src, ": ", e.what());
    }
    auto model = std::make_unique<SD3Transformer2DModel>(cfg);

    // Completeness and shapes before anything is converted, named in the file's own layout.
    std::vector<std::string> missing;
    std::set<std::string> expected;
    for_each_param(*model, [&](const std::string& name, Param& prm) {
        expected.insert(name);
        auto it = w.tensors.find(name);
        if (it == w.tensors.end()) {
            missing.push_back(name_of(name));
            return;
        }
        const Shape& got = it->second.shape();
        const std::string shown = name_of(name) == name ? "'" + name + "'" : "'" + name + "' (from '" + name_of(name) + "')";
        NUANCE_CHECK(got == prm.shape, src, ": tensor ", shown, ": expected ", prm.shape, ", got ", got);
    });
    if (!missing.empty())
        fail(ErrorCode::InvalidArgument, src, ": SD3 transformer (", cfg.describe(), ") is missing tensor '", missing[0],
             "'", missing.size() > 1 ? str(" and ", missing.size() - 1, " more") : std::string());
    for (const auto& [k, v] : w.tensors)
        NUANCE_CHECK_CODE(expected.count(k), Unsupported, src, ": tensor '", name_of(k), "' is not part of the ",
                          cfg.describe());

    LoadOptions o;
    o.source = w.source;
    o.matrices_as_stored = true;
    o.matrix_compute = p;
    load_module(*model, w.tensors, o);
    return model;
}

std::unique_ptr<SD3Transformer2DModel> load_sd3_transformer(const std::string& path, Precision p) {
    return load_sd3_transformer(read_sd3_transformer(path), p);
}

}  // namespace nuance
