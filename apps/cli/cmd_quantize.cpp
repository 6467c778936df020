// nuance quantize: a checkpoint's UNet / transformer as a ComfyUI-GGUF file (io/gguf_quantize.h has the rules).
#include <cstdio>

#include "commands.h"
#include "io/gguf_quantize.h"
#include "io/weights.h"

namespace nuance::cli {

namespace {
int run(const std::string& in, const std::string& out, const std::string& type_name) {
    GgmlType type;
    try {
        type = parse_ggml_type(type_name);
    } catch (const Error&) {
        type = GgmlType::F32;
    }
    if (!can_quantize(type) || type == GgmlType::F32) {
        std::fprintf(stderr, "error: --type '%s': expected q8_0, q4_0, q4_1, q5_0, q5_1, f16 or bf16\n",
                     type_name.c_str());
        return 2;
    }
    const WeightFile wf = load_weights(in);
    const GgufQuantizeSummary s = quantize_to_gguf(wf, out, type);
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
    CLI::App* c = app.add_subcommand("quantize", "Write a checkpoint's UNet / transformer as a quantized GGUF file "
                                                 "(ComfyUI-GGUF layout)");
    c->add_option("-m,--model", *in, "Input checkpoint (safetensors, .ckpt, GGUF)")->required();
    c->add_option("-o,--output", *out, "Output .gguf")->required();
    c->add_option("--type", *type, "q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | f16 | bf16")->required();
    return [=] { return run(*in, *out, *type); };
}

}  // namespace nuance::cli
