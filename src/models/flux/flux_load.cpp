#include "models/flux/flux_load.h"

#include "io/json_file.h"
#include "io/weights.h"
#include "models/flux/flux_original.h"

namespace nuance {

bool is_flux_transformer(const std::map<std::string, Tensor>& t) {
    return find_flux_bfl_prefix(t, nullptr) || find_flux_diffusers_prefix(t, nullptr);
}

std::unique_ptr<FluxTransformer2DModel> build_flux_transformer(const std::map<std::string, Tensor>& tensors,
                                                               const nlohmann::json& config, const LoadOptions& o,
                                                               FluxLayout* layout) {
    const std::string src = o.source.empty() ? std::string("Flux checkpoint") : "'" + o.source + "'";
    std::string prefix;
    std::map<std::string, Tensor> t;
    std::map<std::string, std::string> origin;  // diffusers name -> BFL key (BFL files)
    bool bfl_layout = false;
    if (find_flux_diffusers_prefix(tensors, &prefix)) {
        for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.compare(0, prefix.size(), prefix) == 0;
             ++it)
            t[it->first.substr(prefix.size())] = it->second;
        if (layout) *layout = FluxLayout::Diffusers;
    } else if (find_flux_bfl_prefix(tensors, &prefix)) {
        t = flux_bfl_to_diffusers(tensors, prefix, src, &origin);
        bfl_layout = true;
        if (layout) *layout = FluxLayout::Bfl;
    } else {
        std::string seen;
        size_t n = 0;
        for (auto it = tensors.begin(); it != tensors.end() && n < 5; ++it, ++n) seen += (n ? ", '" : "'") + it->first + "'";
        fail(ErrorCode::InvalidArgument, src, " is not a Flux transformer: no img_in / double_blocks.* (BFL layout) or "
             "x_embedder / transformer_blocks.* (diffusers layout) keys, bare or under model.diffusion_model.; saw ",
             tensors.size(), " tensors: ", seen.empty() ? std::string("none") : seen);
    }
    const auto name_of = [&](const std::string& dif) {
        auto it = origin.find(dif);
        if (it != origin.end()) return it->second + " (diffusers " + dif + ")";
        const std::string bfl = bfl_layout ? flux_bfl_key_of(dif) : std::string();
        return bfl.empty() ? prefix + dif : prefix + bfl + " (diffusers " + dif + ")";
    };

    FluxConfig cfg;
    try {
        cfg = FluxConfig::detect(t);
    } catch (const Error& e) {
        // detect names diffusers keys; for a BFL file say which original key was missing too.
        fail(e.code(), src, ": ", e.what(), bfl_layout ? " (a BFL-layout file: the key map found no such tensor)" : "");
    }
    if (!config.is_null()) cfg.apply_json(config);
    cfg.validate();
    auto m = std::make_unique<FluxTransformer2DModel>(cfg);

    // Exact shapes (load_module would quietly reshape a same-size tensor, e.g. a transposed matrix).
    for_each_param(*m, [&](const std::string& name, Param& p) {
        auto it = t.find(name);
        if (it == t.end()) {
            const bool guidance = name.find("guidance_embedder") != std::string::npos;
            NUANCE_CHECK(!guidance, src, ": Flux-dev config (guidance_embeds) but the file has no ", name_of(name));
            fail(ErrorCode::InvalidArgument, src, " is missing Flux tensor '", name_of(name), "' (expected shape ",
                 p.shape, ")");
        }
        NUANCE_CHECK(it->second.shape() == p.shape, src, ": Flux tensor '", name_of(name), "': expected ", p.shape,
                     ", got ", it->second.shape(), " (", cfg.describe(), ")");
    });
    LoadOptions lo = o;
    lo.source = o.source.empty() ? "Flux checkpoint" : o.source;
    const std::vector<std::string> unused = load_module(*m, t, lo);
    if (!unused.empty()) {
        std::string list;
        for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", '" : "'") + name_of(unused[i]) + "'";
        if (unused.size() > 5) list += str(" and ", unused.size() - 5, " more");
        fail(ErrorCode::InvalidArgument, src, ": ", unused.size(), " tensor(s) that a Flux transformer (",
             cfg.describe(), ") does not have: ", list);
    }
    return m;
}

std::unique_ptr<FluxTransformer2DModel> load_flux_transformer(const std::string& path, const LoadOptions& o,
                                                              FluxLayout* layout) {
    LoadOptions lo = o;
    if (!is_directory(path)) {
        if (lo.source.empty()) lo.source = path;
        return build_flux_transformer(load_weights(path).tensors, nlohmann::json(), lo, layout);
    }
    const std::string dir = is_directory(path + "/transformer") ? path + "/transformer" : path;
    const std::string w = find_first_file(dir, {"diffusion_pytorch_model.safetensors",
                                                "diffusion_pytorch_model.safetensors.index.json",
                                                "diffusion_pytorch_model.fp16.safetensors",
                                                "diffusion_pytorch_model.bf16.safetensors", "diffusion_pytorch_model.bin"});
    NUANCE_CHECK_CODE(!w.empty(), NotFound, "Flux folder '", path, "': no diffusion_pytorch_model.safetensors (or "
                      ".safetensors.index.json, .bin) in ", dir);
    nlohmann::json cfg;
    if (auto j = read_optional_json_object(dir + "/config.json")) {
        cfg = std::move(*j);
        NUANCE_CHECK(!cfg.contains("_class_name") || cfg["_class_name"] == "FluxTransformer2DModel", "'", dir,
                     "/config.json': _class_name is ", cfg["_class_name"].dump().substr(0, 64),
                     ", not FluxTransformer2DModel");
    }
    if (lo.source.empty()) lo.source = w;
    return build_flux_transformer(load_weights(w).tensors, cfg, lo, layout);
}

}  // namespace nuance
