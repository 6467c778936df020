#include "models/controlnet/controlnet_random.h"

#include "io/safetensors.h"
#include "models/controlnet/controlnet.h"
#include "models/convert/original_parts.h"
#include "models/sd/stable_diffusion.h"
#include "ops/ops.h"

namespace nuance {

ControlNetLayout parse_controlnet_layout(const std::string& s) {
    if (s == "diffusers") return ControlNetLayout::Diffusers;
    if (s == "original") return ControlNetLayout::Original;
    if (s == "difference") return ControlNetLayout::Difference;
    fail(ErrorCode::InvalidArgument, "unknown ControlNet layout '", s, "' (valid: diffusers, original, difference)");
}

void write_random_controlnet(const DiffusionModel& m, const std::string& path, ControlNetLayout layout, uint64_t seed) {
    const auto* sd = dynamic_cast<const StableDiffusionModel*>(&m);
    NUANCE_CHECK_CODE(sd && sd->unet, Unsupported, "random ControlNet: ", m.family_name(), " models (", m.name,
                      ") take no ControlNet");
    const UNetConfig& u = sd->unet->config();
    const std::vector<int64_t> emb = u.block_out_channels[0] >= 320 ? std::vector<int64_t>{16, 32, 96, 256}
                                                                    : std::vector<int64_t>{8, 16, 16, 32};
    ControlNetModel cn(ControlNetConfig::from_unet(u, emb));
    init_random(cn, seed);
    std::vector<std::pair<std::string, Tensor>> sd_cn = state_dict(cn);
    for (auto& [k, t] : sd_cn) t = t.f32().contiguous();
    if (layout == ControlNetLayout::Diffusers) {
        save_safetensors(path, sd_cn, {{"nuance", "random ControlNet"}});
        return;
    }
    using original_format::TensorMap;
    auto& unet = const_cast<UNet2DConditionModel&>(*sd->unet);  // only read
    TensorMap base;
    for (auto& [k, t] : state_dict(unet)) base[k] = t;
    // The encoder half through the UNet converter (it wants a whole UNet: the base's decoder completes it).
    TensorMap whole, ctrl;
    for (const auto& [k, t] : sd_cn) {
        if (k.rfind("controlnet_", 0) == 0) ctrl[k] = t;
        else if (layout == ControlNetLayout::Difference && base.count(k)) whole[k] = (t - base.at(k).f32()).contiguous();
        else whole[k] = t;
    }
    for (const auto& [k, t] : base)
        if (k.rfind("up_blocks.", 0) == 0 || k.rfind("conv_norm_out.", 0) == 0 || k.rfind("conv_out.", 0) == 0)
            whole[k] = t;
    std::vector<std::pair<std::string, Tensor>> out;
    for (const auto& [k, t] : original_format::unet_to_original(whole)) {
        if (k.rfind("output_blocks.", 0) == 0 || k.rfind("out.", 0) == 0) continue;
        out.emplace_back("control_model." + k, t);
    }
    const int64_t nb = (int64_t)(emb.size() - 1) * 2;
    for (const auto& [k, t] : ctrl) {
        const auto parts = original_format::split_key(k);
        std::string dst;
        if (parts[0] == "controlnet_down_blocks") dst = str("zero_convs.", parts[1], ".0.", parts[2]);
        else if (parts[0] == "controlnet_mid_block") dst = "middle_block_out.0." + parts[1];
        else if (parts[1] == "conv_in") dst = "input_hint_block.0." + parts[2];
        else if (parts[1] == "conv_out") dst = str("input_hint_block.", 2 * (nb + 1), ".", parts[2]);
        else dst = str("input_hint_block.", 2 * (std::stoll(parts[2]) + 1), ".", parts[3]);  // blocks.i
        out.emplace_back("control_model." + dst, t);
    }
    if (layout == ControlNetLayout::Difference) out.emplace_back("difference", Tensor::zeros({1}));
    save_safetensors(path, out, {{"nuance", "random ControlNet"}});
}

}  // namespace nuance
