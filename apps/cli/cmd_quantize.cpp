// nuance quantize: a checkpoint's UNet / transformer as a ComfyUI-GGUF file (io/gguf_quantize.h has the rules).
#include <cstdio>

#include "commands.h"
#include "io/gguf_quantize.h"
#include "io/weights.h"

namespace nuance::cli {

namespace {
int run(const std::string& in, const std::string& out, const std::string& type_name, const std::string& layout) {
    const std::optional<QuantizeRecipe> recipe = parse_quantize_recipe(type_name);
    if (!recipe) {
        std::fprintf(stderr, "error: --type '%s': expected one of %s\n", type_name.c_str(),
                     quantize_recipe_names().c_str());
        return 2;
    }
    if (layout != "comfy" && layout != "full" && layout != "sdcpp") {
        std::fprintf(stderr, "error: --layout '%s': expected comfy, full or sdcpp\n", layout.c_str());
        return 2;
    }
    const WeightFile wf = load_weights(in);
    const GgufQuantizeSummary s = quantize_to_gguf(wf, out, *recipe,
                                                   layout == "full"    ? GgufLayout::Full
                                                   : layout == "sdcpp" ? GgufLayout::SdCpp
                                                                       : GgufLayout::Comfy);
    std::printf("wrote %s: architecture %s, %llu data bytes\n", out.c_str(), s.architecture.c_str(),
                (unsigned long long)s.bytes);
    for (const auto& [t, n] : s.tensors_per_type) std::printf("  %-5s %lld tensors\n", t.c_str(), (long long)n);
    if (s.dropped) std::printf("left out: %lld tensors of other components (VAE, text encoders)\n", (long long)s.dropped);
    return 0;
}
}  // namespace

Runner add_quantize(CLI::App& app) {
    auto in = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto type = std::make_shared<std::string>();
    auto layout = std::make_shared<std::string>("comfy");
    CLI::App* c = app.add_subcommand("quantize", "Write a checkpoint's UNet / transformer as a quantized GGUF file "
                                                 "(ComfyUI-GGUF layout)");
    c->add_option("-m,--model", *in, "Input checkpoint (safetensors, .ckpt, GGUF)")->required();
    c->add_option("-o,--output", *out, "Output .gguf")->required();
    c->add_option("--type", *type,
                  "q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | q3_k | q4_k | q5_k | q6_k | f16 | bf16 (every quantized tensor at that type), or a "
                  "ComfyUI-GGUF mixed recipe: q2_k (attention v at q3_k), q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, "
                  "q5_k_s, q5_k_m (attention v, fused qkv and feed-forward output higher)")
        ->required();
    c->add_option("--layout", *layout,
                  "comfy: the UNet / transformer alone (ComfyUI-GGUF); full: every component of an original "
                  "checkpoint under its full key (text encoder quantized too, VAE F16), for nuance generate; sdcpp: "
                  "the same keys with every tensor in its own shape, quantized as stable-diffusion.cpp's converter "
                  "does (convolutions stay F16), a file stable-diffusion.cpp loads")
        ->capture_default_str();
    return [=] { return run(*in, *out, *type, *layout); };
}

}  // namespace nuance::cli
