// nuance info: what a checkpoint is (family, config, dtypes, components).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>

#include "adapters/lora.h"
#include "commands.h"
#include "nn/module.h"
#include "models/quantize_weights.h"
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

// What a single file that is not a whole model holds -- a transformer without its text encoders, a text encoder, a
// VAE, a LoRA, a ControlNet, as ComfyUI users keep them -- from tensor names and shapes, and how `generate` takes it.
struct ComponentGuess {
    std::string what, use;
};

int64_t count_blocks(const WeightFile& wf, const std::string& prefix) {  // distinct N in "<prefix>N."
    std::set<int64_t> ids;
    for (const auto& [k, t] : wf.tensors) {
        if (k.rfind(prefix, 0) != 0) continue;
        const size_t b = prefix.size(), e = k.find('.', b);
        if (e == std::string::npos || e == b || e - b > 6) continue;
        const std::string n = k.substr(b, e - b);
        if (n.find_first_not_of("0123456789") == std::string::npos) ids.insert(std::stoll(n));
    }
    return (int64_t)ids.size();
}

ComponentGuess guess_component(const WeightFile& wf) {
    auto has = [&](const std::string& k) { return wf.tensors.count(k) != 0; };
    auto any_with = [&](const char* part) {
        for (const auto& [k, t] : wf.tensors)
            if (k.find(part) != std::string::npos) return true;
        return false;
    };
    auto any_ending = [&](const std::string& suffix) {  // LyCORIS' markers, as whole name endings
        for (const auto& [k, t] : wf.tensors)
            if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) return true;
        return false;
    };
    auto dim = [&](const std::string& k, int64_t i) -> int64_t {
        const auto it = wf.tensors.find(k);
        return it != wf.tensors.end() && it->second.dim() > i ? it->second.size(i) : 0;
    };
    // the prefix transformer files carry when saved from ComfyUI
    std::string dm;
    for (const char* p : {"model.diffusion_model.", ""})
        if (count_blocks(wf, std::string(p) + "joint_blocks.") > 0 || count_blocks(wf, std::string(p) + "double_blocks.") > 0) {
            dm = p;
            break;
        }
    if (any_with("lora_up.") || any_with("lora_down.") || any_with(".lora_A.") || any_with(".lora_B.") ||
        any_with(".hada_w1_a") || any_with(".lokr_w1") || any_ending(".oft_blocks") || any_ending(".a1.weight") ||
        any_ending(".on_input") || any_ending(".w_norm") || any_ending(".diff") || any_ending(".diff_b")) {
        std::set<std::string> modules;  // (a LoKr module has lokr_w1 or lokr_w1_a + lokr_w1_b: count names)
        for (const auto& [k, t] : wf.tensors)
            for (const char* part : {".lora_down.weight", ".lora_A.weight", ".lora_A.default.weight", ".hada_w1_a",
                                     ".lokr_w1", ".lokr_w1_a", ".oft_blocks", ".a1.weight", ".on_input", ".w_norm",
                                     ".diff", ".diff_b"})
                if (k.size() > std::strlen(part) && k.compare(k.size() - std::strlen(part), std::string::npos, part) == 0)
                    modules.insert(k.substr(0, k.size() - std::strlen(part)));
        return {str("a LoRA / LyCORIS file (", modules.size(), " adapted modules)"),
                "nuance generate -m MODEL --lora FILE[:weight], or <lora:NAME:weight> in the prompt with --lora-dir"};
    }
    if (count_blocks(wf, "control_model.input_blocks.") > 0 || any_with("controlnet_cond_embedding.") ||
        any_with("input_hint_block."))
        return {"a ControlNet", "nuance generate -m MODEL --control-net FILE --control-image IMAGE"};
    if (const int64_t n = count_blocks(wf, dm + "joint_blocks."); n > 0)
        return {str("an SD3 / SD3.5 transformer (MMDiT, ", n, " joint blocks, width ",
                    dim(dm + "x_embedder.proj.weight", 0), ") without its text encoders"),
                "nuance generate -m FILE --clip-l clip_l.safetensors --clip-g clip_g.safetensors --t5xxl "
                "t5xxl_fp16.safetensors (and --vae, unless the file holds first_stage_model.*)"};
    if (const int64_t n = count_blocks(wf, dm + "double_blocks."); n > 0)
        return {str("a Flux.1 transformer (", has(dm + "guidance_in.in_layer.weight") ? "dev: guidance-distilled" : "schnell",
                    ", ", n, " double + ", count_blocks(wf, dm + "single_blocks."), " single blocks) without its text "
                    "encoders and VAE"),
                "nuance generate -m FILE --clip-l clip_l.safetensors --t5xxl t5xxl_fp16.safetensors --vae ae.safetensors"};
    if (const int64_t n = count_blocks(wf, "text_model.encoder.layers."); n > 0) {
        const int64_t w = dim("text_model.embeddings.token_embedding.weight", 1);
        const char* kind = w == 768 ? "CLIP-L" : w == 1280 ? "CLIP-G" : w == 1024 ? "OpenCLIP ViT-H (SD2)" : "CLIP";
        return {str("a ", kind, " text encoder (Hugging Face layout, ", n, n == 1 ? " layer" : " layers", ", width ", w,
                    ")"),
                w == 768    ? std::string("nuance generate -m MODEL --clip-l FILE (SD1/SDXL UNet-only files, SD3, Flux)")
                : w == 1280 ? std::string("nuance generate -m MODEL --clip-g FILE (SDXL UNet-only files, SD3)")
                : w == 1024 ? std::string("nuance generate -m MODEL --clip-h FILE (SD2 UNet-only files)")
                            : std::string("nuance generate -m MODEL --clip-l FILE (width 768), --clip-g FILE (width "
                                          "1280) or --clip-h FILE (width 1024)")};
    }
    if (const int64_t n = count_blocks(wf, "transformer.resblocks."); n > 0 && has("token_embedding.weight")) {
        const int64_t w = dim("token_embedding.weight", 1);
        return {str("an OpenCLIP text encoder (", n, n == 1 ? " layer" : " layers", ", width ", w,
                    w == 1024 ? ": ViT-H, SD2's" : w == 1280 ? ": bigG" : "", ")"),
                w == 1024 ? "nuance generate -m MODEL --clip-h FILE (SD2 UNet-only files)"
                          : "nuance generate -m MODEL --clip-g FILE (SDXL UNet-only files, SD3)"};
    }
    if (const int64_t n = count_blocks(wf, "encoder.block."); n > 0 && (has("shared.weight") || has("encoder.embed_tokens.weight"))) {
        const int64_t d = dim(has("shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight", 1);
        return {str("a T5 encoder (", n, n == 1 ? " block" : " blocks", ", d_model ", d, d == 4096 ? ": T5-XXL" : "", ")"),
                "nuance generate -m MODEL --t5xxl FILE (SD3, Flux)"};
    }
    if (has("encoder.conv_in.weight") && has("decoder.conv_in.weight"))
        return {str("a VAE (AutoencoderKL, ", dim("decoder.conv_in.weight", 1), " latent channels)"),
                "nuance generate -m MODEL --vae FILE"};
    if (count_blocks(wf, "input_blocks.") > 0 || count_blocks(wf, "model.diffusion_model.input_blocks.") > 0 ||
        count_blocks(wf, "down_blocks.") > 0)
        return {"a UNet without its text encoder and VAE",
                "nuance generate -m FILE --clip-l clip_l.safetensors [--clip-g clip_g.safetensors for SDXL] --vae "
                "vae.safetensors (SD2: --clip-h FILE, its OpenCLIP ViT-H text encoder, instead of --clip-l)"};
    return {};
}

// A LoRA / LyCORIS file as nuance's loader reads it: the algorithms, DoRA, ranks and scales, the text-encoder share,
// and the training record kohya-style trainers (nuance included) write into the metadata.
void print_lora_details(const std::string& path) {
    LoraFile lf;
    try {
        lf = load_lora(path);
    } catch (const Error& e) {
        std::printf("lora: cannot be read as a LoRA (%s)\n", e.what());
        return;
    }
    std::map<std::string, int64_t> kinds;
    int64_t dora = 0, tucker = 0, te = 0, rmin = INT64_MAX, rmax = 0, constrained = 0, rescaled = 0;
    double smin = 1e300, smax = -1e300;
    for (const LoraModule& m : lf.modules) {
        ++kinds[lora_kind_name(m.kind)];
        dora += m.dora_scale.defined();
        tucker += m.t.count("mid") || m.t.count("t1") || m.t.count("t2");  // LyCORIS' use_tucker (CP) cores
        te += m.name.rfind("lora_te", 0) == 0 || m.name.rfind("text_encoder", 0) == 0;
        const bool oft = m.kind == LoraKind::OFT || m.kind == LoraKind::BOFT;
        constrained += oft && m.has_alpha && m.alpha > 0;  // (OFT's alpha is LyCORIS' norm constraint)
        rescaled += oft && m.t.count("rescale");
        const int64_t r = m.rank();
        if (r > 0) rmin = std::min(rmin, r), rmax = std::max(rmax, r);
        if (r > 0 || m.kind == LoraKind::LoRA || m.kind == LoraKind::LoHa || m.kind == LoraKind::LoKr) {
            // (IA3, OFT, BOFT, full and norm diffs have no alpha / rank scale; GLoRA applies its own)
            const double s = m.kind == LoraKind::GLoRA && m.has_alpha && r > 0 ? m.alpha / (double)r : m.scale();
            smin = std::min(smin, s);
            smax = std::max(smax, s);
        }
    }
    std::string k;
    for (const auto& [name, n] : kinds) k += str(k.empty() ? "" : ", ", name, " ", n);
    std::string extra;
    if (dora) extra += str(dora, " with DoRA magnitudes");
    if (tucker) extra += str(extra.empty() ? "" : ", ", tucker, " with Tucker cores");
    if (constrained) extra += str(extra.empty() ? "" : ", ", constrained, " with a norm constraint");
    if (rescaled) extra += str(extra.empty() ? "" : ", ", rescaled, " rescaled");
    std::printf("lora: %s%s; %lld of %zu modules on text encoders\n", k.c_str(),
                extra.empty() ? "" : (" (" + extra + ")").c_str(), (long long)te, lf.modules.size());
    if (!lf.modules.empty()) {
        const std::string ranks = rmax == 0 ? std::string("none (full factors)")
                                  : rmin == rmax ? std::to_string(rmin) : str(rmin, "-", rmax);
        const std::string scales = smin > smax ? std::string("none") : smin == smax ? str(smin) : str(smin, "-", smax);
        std::printf("lora_rank: %s, scale (alpha / rank): %s\n", ranks.c_str(), scales.c_str());
    }
    auto meta = [&](const char* key) {
        const auto it = lf.metadata.find(key);
        return it == lf.metadata.end() ? std::string() : it->second;
    };
    std::string trained;
    for (const auto& [label, key] : std::vector<std::pair<const char*, const char*>>{
             {"network", "ss_network_module"}, {"args", "ss_network_args"}, {"base", "ss_base_model_version"},
             {"model", "ss_sd_model_name"}, {"steps", "ss_steps"}, {"resolution", "ss_resolution"},
             {"images", "ss_num_train_images"}, {"reg images", "ss_num_reg_images"}}) {
        std::string v = meta(key);
        if (v.empty() || v == "None") continue;
        if (v.size() > 200) v = v.substr(0, 200) + "...";
        trained += str(trained.empty() ? "" : ", ", label, " ", v);
    }
    if (!trained.empty()) std::printf("lora_training: %s\n", trained.c_str());
}

// The component flags generate takes, so a transformer-only SD3 / Flux file can be described with its split files.
struct InfoArgs {
    std::string path, vae, clip_l, clip_g, clip_h, t5xxl, family, weight_type;
    bool tensors = false;
    ModelLoadOptions load_options() const {
        ModelLoadOptions o;
        o.vae_path = vae;
        o.clip_l = clip_l;
        o.clip_g = clip_g;
        o.clip_h = clip_h;
        o.t5xxl = t5xxl;
        o.family = family;
        return o;
    }
};

int run(const InfoArgs& a) {
    const std::string& path = a.path;
    check_usage_weight_type(a.weight_type);
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
    std::unique_ptr<DiffusionModel> m;
    try {
        m = load_model(path, a.load_options());
    } catch (const Error& e) {
        // Not a whole model: a component file is described as one (exit 0); anything else fails as before.
        if (is_directory(path)) throw;
        const ComponentGuess g = guess_component(load_weights(path));
        if (g.what.empty()) throw;
        const std::string why = e.what();
        std::printf("component: %s\nuse: %s\n", g.what.c_str(), g.use.c_str());
        if (g.what.rfind("a LoRA", 0) == 0) print_lora_details(path);
        // the loader's reason when it names what is missing (not its "unknown layout" list of tensor names)
        if (why.rfind("unknown model layout", 0) != 0) std::printf("model: not a whole model (%s)\n", why.c_str());
        return 0;
    }
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
    if (!a.weight_type.empty()) {  // what generate --type would hold
        const QuantizeWeightsSummary q = quantize_model_weights(*m, parse_weight_type(a.weight_type));
        std::printf("with --type %s\n", q.describe().c_str());
        if (tensors)
            for (auto& [comp, mod] : m->modules())
                if (mod)
                    for_each_param(*mod, [&, c = comp](const std::string& n, Param& p) {
                        if (p.matrix && p.value.defined())
                            std::printf("  %s/%s %s\n", c.c_str(), n.c_str(),
                                        quantized_weight_view(p.value) ? quantized_weight_str(p.value).c_str()
                                                                       : p.value.str().c_str());
                    });
    }
    return 0;
}
}  // namespace

Runner add_info(CLI::App& app) {
    auto a = std::make_shared<InfoArgs>();
    CLI::App* c = app.add_subcommand("info", "Describe a checkpoint: family, config, dtypes, components");
    c->add_option("model", a->path, "Checkpoint file or diffusers folder")->required();
    c->add_option("--vae", a->vae, "VAE override, as for generate");
    c->add_option("--clip-l", a->clip_l, "CLIP-L text encoder file, as for generate (SD3, Flux)");
    c->add_option("--clip-g", a->clip_g, "CLIP-G text encoder file, as for generate (SDXL UNet-only files, SD3)");
    c->add_option("--clip-h", a->clip_h, "OpenCLIP ViT-H text encoder file, as for generate (SD2 UNet-only files)");
    c->add_option("--t5xxl", a->t5xxl, "T5-XXL text encoder file, as for generate (SD3, Flux)");
    c->add_option("--family", a->family, "Load as this registry family instead of detecting it (sd1, sd2, sdxl, sd3, ...)");
    c->add_flag("--tensors", a->tensors, "List every tensor");
    c->add_option("--type", a->weight_type,
                  "Also show what generate --type T would quantize (counts and sizes; with --tensors, each product "
                  "weight's type)");
    return [a] { return run(*a); };
}

}  // namespace nuance::cli
