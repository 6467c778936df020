// The gguf golden case: every quant type dequantized bit for bit (quants.gguf, align64.gguf), and the tiny SD1.5 UNet
// loaded from its ComfyUI-GGUF (Q8_0, bare LDM keys) and stable-diffusion.cpp (q4_0, full original keys) files.
#include "eval/golden/gguf_golden.h"
#include "backends/backend.h"
#include "eval/golden_case.h"
#include "io/gguf.h"
#include "models/convert/original_format.h"
#include "models/unet/unet2d.h"

namespace nuance {

namespace {

constexpr const char* kLdmPrefix = "model.diffusion_model.";

// The diffusers UNet from a GGUF UNet file of either layout: ComfyUI-GGUF keys are bare LDM names (its loader strips
// model.diffusion_model. when present), stable-diffusion.cpp keys carry the prefix; both go through the
// original-layout key map.
std::map<std::string, Tensor> unet_from_gguf(const WeightFile& wf) {
    std::map<std::string, Tensor> ldm;
    for (const auto& [k, v] : wf.tensors)
        ldm[k.rfind(kLdmPrefix, 0) == 0 ? k : kLdmPrefix + k] = v;
    return split_original(ldm).unet;
}

}  // namespace

std::vector<CompareLine> check_golden_gguf(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    std::vector<CompareLine> out;
    for (const std::string file : {"quants", "align64"}) {
        const WeightFile wf = load_gguf(gc.path(file + ".gguf"));
        for (const auto& [name, t] : wf.tensors) out.push_back(gc.compare(file + "." + name, t.f32(), 0.0));
    }
    // The UNet's head count and norm groups are not in the shapes: the case is ../unet_sd15's model (README).
    const GoldenCase unet_case = GoldenCase::load(case_dir + "/../unet_sd15");
    const nlohmann::json cfg_json = unet_case.model_config(unet_case.models().at(0).first);
    for (const auto& [tag, file] : {std::pair<std::string, std::string>{"comfy", "unet_sd15_comfy_Q8_0.gguf"},
                                    {"sdcpp", "unet_sd15_sdcpp_q4_0.gguf"}}) {
        // Quantized weights stay quantized (the products use the blocks: backends/cpu/quantized_matmul.h).
        const WeightFile wf = load_gguf(gc.path(file), /*keep_quantized=*/true);
        for (const auto& [name, t] : wf.tensors)
            if (gc.has("unet." + tag + ".dequant." + name))
                out.push_back(gc.compare("unet." + tag + ".dequant." + name, dequantize_weight(t).f32(), 0.0));
        const std::map<std::string, Tensor> weights = unet_from_gguf(wf);
        UNetConfig cfg = UNetConfig::detect(weights);
        cfg.apply_json(cfg_json);
        UNet2DConditionModel unet(cfg);
        LoadOptions lo = gc.load_options(gc.path(file));
        lo.matrices_as_stored = true;  // the quantized weights stay blocks: the products run on them
        load_module(unet, weights, lo);
        const Tensor eps = unet.forward(gc.tensor("unet.sample"), gc.tensor("unet.timestep"),
                                        gc.tensor("unet.encoder_hidden_states"), UNetExtra{});
        out.push_back(gc.compare("unet." + tag + ".eps", eps));
    }
    return out;
}

}  // namespace nuance
