// nuance info: what a checkpoint is (family, config, dtypes, components).
#include <cstdio>
#include <map>

#include "commands.h"
#include "io/gguf.h"
#include "io/weights.h"
#include "models/model_family.h"

namespace nuance::cli {

namespace {
// GGUF: the header, the metadata that matters, and per ggml type the tensor count and bytes -- read from the tensor
// infos, without dequantizing anything (a Flux Q4_K file would otherwise become 48 GB of f32).
void print_gguf(const std::string& path, bool tensors) {
    const GgufFile g = read_gguf(path);
    std::printf("format: GGUF v%u (alignment %llu, %zu metadata keys)\n", g.version,
                (unsigned long long)g.alignment, g.kv.size());
    for (const auto& [k, v] : g.kv) {
        if (k.rfind("general.", 0) != 0 || (v.type == GgufValueType::Array && v.count > 16)) continue;
        std::string text = v.type == GgufValueType::String ? v.s : v.to_string();
        if (k == "general.file_type" && v.as_int()) {
            const std::string n = gguf_file_type_name(*v.as_int());
            if (!n.empty()) text += " (" + n + ")";
        }
        std::printf("%s: %s\n", k.c_str(), text.c_str());
    }
    if (!g.find("general.architecture")) std::printf("general.architecture: (none: a stable-diffusion.cpp file?)\n");
    size_t orig_shapes = 0;
    for (const auto& [k, v] : g.kv) orig_shapes += k.rfind("comfy.gguf.orig_shape.", 0) == 0;
    if (orig_shapes) std::printf("comfy.gguf.orig_shape: %zu tensors stored reshaped\n", orig_shapes);
    struct Row { size_t count = 0; uint64_t bytes = 0; int64_t values = 0; };
    std::map<std::string, Row> by_type;
    uint64_t total = 0;
    int64_t params = 0;
    for (const auto& t : g.tensors) {
        Row& r = by_type[ggml_type_info(t.type)->name];
        const int64_t n = shape_numel(t.shape);
        ++r.count;
        r.bytes += t.nbytes;
        r.values += n;
        total += t.nbytes;
        params += n;
    }
    std::printf("tensors: %zu\nparameters: %lld\ndata bytes: %llu\n", g.tensors.size(), (long long)params,
                (unsigned long long)total);
    for (const auto& [name, r] : by_type)
        std::printf("  %-7s %6zu tensors %14llu bytes %7.3f bits/value\n", name.c_str(), r.count,
                    (unsigned long long)r.bytes, r.values ? 8.0 * (double)r.bytes / (double)r.values : 0.0);
    if (tensors)
        for (const auto& t : g.tensors)
            std::printf("  %s %s%s\n", t.name.c_str(), ggml_type_info(t.type)->name, shape_str(t.shape).c_str());
}

int run(const std::string& path, const std::string& vae, bool tensors) {
    std::printf("path: %s\n", path.c_str());
    if (!is_directory(path) && detect_weight_format(path) == WeightFormat::Gguf) {
        print_gguf(path, tensors);
        // A bare UNet / transformer / text encoder GGUF (the usual ComfyUI-GGUF file) is not a whole model: the
        // file description above is the answer then.
        try {
            ModelLoadOptions o;
            o.vae_path = vae;
            const std::unique_ptr<DiffusionModel> m = load_model(path, o);
            std::printf("%s", m->describe().c_str());
        } catch (const Error& e) {
            std::printf("model: not a complete model checkpoint of a known family (%s)\n", e.what());
        }
        return 0;
    }
    if (!is_directory(path)) {
        const WeightFile wf = load_weights(path);
        std::map<std::string, int64_t> dtypes;
        int64_t params = 0;
        for (const auto& [k, t] : wf.tensors) {
            dtypes[dtype_name(t.dtype())] += t.numel();
            params += t.numel();
        }
        std::printf("tensors: %zu\nparameters: %lld\ndtypes:", wf.tensors.size(), (long long)params);
        for (const auto& [d, n] : dtypes) std::printf(" %s=%lld", d.c_str(), (long long)n);
        std::printf("\n");
        if (tensors)
            for (const auto& [k, t] : wf.tensors) std::printf("  %s %s\n", k.c_str(), t.str().c_str());
    }
    ModelLoadOptions o;
    o.vae_path = vae;
    const std::unique_ptr<DiffusionModel> m = load_model(path, o);
    std::printf("%s", m->describe().c_str());
    std::printf("variant: %s\n", m->variant().c_str());
    const LatentFormat lf = m->latent_format();
    if (lf.pixel_space)
        std::printf("latents: pixel space, %lld channels\n", (long long)lf.channels);
    else
        std::printf("latents: %lld channels, /%lld, scale %g, shift %g\n", (long long)lf.channels,
                    (long long)lf.downscale, lf.scaling_factor, lf.shift_factor);
    std::printf("objective: %s, guidance: %s\n", prediction_name(m->objective().prediction),
                guidance_kind_name(m->guidance()));
    std::string names, counts;
    for (const ComponentInfo& c : m->components()) {
        names += " " + c.name;
        counts += str(" ", c.name, "=", c.parameters);
    }
    std::printf("components:%s\nparameters_per_component:%s\n", names.c_str(), counts.c_str());
    return 0;
}
}  // namespace

Runner add_info(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto vae = std::make_shared<std::string>();
    auto tensors = std::make_shared<bool>(false);
    CLI::App* c = app.add_subcommand("info", "Describe a checkpoint: family, config, dtypes, components");
    c->add_option("model", *path, "Checkpoint file or diffusers folder")->required();
    c->add_option("--vae", *vae, "VAE override, as for generate");
    c->add_flag("--tensors", *tensors, "List every tensor");
    return [=] { return run(*path, *vae, *tensors); };
}

}  // namespace nuance::cli
