// nuance info: what a checkpoint is (family, config, dtypes, components).
#include <cstdio>
#include <map>

#include "commands.h"
#include "core/quantized_weight.h"
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

// The component flags generate takes, so a transformer-only SD3 / Flux file can be described with its split files.
struct InfoArgs {
    std::string path, vae, clip_l, clip_g, t5xxl, family;
    bool tensors = false;
    ModelLoadOptions load_options() const {
        ModelLoadOptions o;
        o.vae_path = vae;
        o.clip_l = clip_l;
        o.clip_g = clip_g;
        o.t5xxl = t5xxl;
        o.family = family;
        return o;
    }
};

int run(const InfoArgs& a) {
    const std::string& path = a.path;
    const bool tensors = a.tensors;
    std::printf("path: %s\n", path.c_str());
    if (!is_directory(path) && detect_weight_format(path) == WeightFormat::Gguf) {
        print_gguf(path, tensors);
        // A bare UNet / transformer / text encoder GGUF (the usual ComfyUI-GGUF file) is not a whole model: the
        // file description above is the answer then.
        try {
            const std::unique_ptr<DiffusionModel> m = load_model(path, a.load_options());
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
        int64_t scaled = 0;
        for (const auto& [k, t] : wf.tensors) {
            // An FP8 matrix kept as its bytes (or ggml blocks): its stored type, not the handle's U8.
            const std::string q = quantized_weight_str(t);
            dtypes[q.empty() ? std::string(dtype_name(t.dtype())) : q.substr(0, q.find('['))] += t.numel();
            scaled += q.find('*') != std::string::npos;
            params += t.numel();
        }
        std::printf("tensors: %zu\nparameters: %lld\ndtypes:", wf.tensors.size(), (long long)params);
        for (const auto& [d, n] : dtypes) std::printf(" %s=%lld", d.c_str(), (long long)n);
        if (scaled > 0) std::printf(" (%lld scaled FP8 matrices)", (long long)scaled);
        std::printf("\n");
        if (tensors)
            for (const auto& [k, t] : wf.tensors) std::printf("  %s %s\n", k.c_str(), t.str().c_str());
    }
    const std::unique_ptr<DiffusionModel> m = load_model(path, a.load_options());
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
    auto a = std::make_shared<InfoArgs>();
    CLI::App* c = app.add_subcommand("info", "Describe a checkpoint: family, config, dtypes, components");
    c->add_option("model", a->path, "Checkpoint file or diffusers folder")->required();
    c->add_option("--vae", a->vae, "VAE override, as for generate");
    c->add_option("--clip-l", a->clip_l, "CLIP-L text encoder file, as for generate (SD3, Flux)");
    c->add_option("--clip-g", a->clip_g, "CLIP-G text encoder file, as for generate (SD3)");
    c->add_option("--t5xxl", a->t5xxl, "T5-XXL text encoder file, as for generate (SD3, Flux)");
    c->add_option("--family", a->family, "Load as this registry family instead of detecting it (sd1, sd2, sdxl, sd3, ...)");
    c->add_flag("--tensors", a->tensors, "List every tensor");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
