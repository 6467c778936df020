#include "eval/golden/controlnet_golden.h"

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/controlnet/controlnet.h"
#include "models/controlnet/controlnet_load.h"
#include "ops/ops.h"

namespace nuance {

std::vector<CompareLine> check_golden_controlnet(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    const WeightFile wf = load_safetensors(gc.path("controlnet.safetensors"));
    ControlNetConfig cfg = ControlNetConfig::detect(wf.tensors);
    cfg.apply_json(gc.model_config("controlnet"));
    ControlNetModel cn(cfg);
    load_module(cn, wf.tensors, gc.load_options(gc.path("controlnet.safetensors")));
    const float scale = gc.meta().value("conditioning_scale", 1.0f);

    const Tensor x = gc.tensor("sample"), t = gc.tensor("timestep"), ctx = gc.tensor("encoder_hidden_states");
    const ControlResiduals r = cn.forward(x, t, ctx, gc.tensor("controlnet_cond"));
    std::vector<CompareLine> out;
    UNetExtra extra;
    for (size_t i = 0; i < r.down.size(); ++i) {
        extra.down_residuals.push_back(r.down[i] * scale);
        out.push_back(gc.compare(str("down.", i), extra.down_residuals.back().contiguous()));
    }
    extra.mid_residual = r.mid * scale;
    out.push_back(gc.compare("mid", extra.mid_residual.contiguous()));

    const std::string unet_rel = gc.meta().value("unet_weights", std::string("../unet_sd15/unet.safetensors"));
    const std::string unet_path = gc.path(unet_rel), unet_dir = unet_path.substr(0, unet_path.find_last_of('/'));
    if (!file_exists(unet_path)) {
        out.push_back(skip_line("unet_eps_with_control", "the unet_sd15 case is not next to this one (" + unet_rel + ")"));
        return out;
    }
    const GoldenCase ugc = GoldenCase::load(unet_dir);
    const WeightFile uw = load_safetensors(unet_path);
    UNetConfig ucfg = UNetConfig::detect(uw.tensors);
    ucfg.apply_json(ugc.model_config(ugc.models().front().first));
    UNet2DConditionModel unet(ucfg);
    load_module(unet, uw.tensors, gc.load_options(unet_path));
    check_controlnet_fits(cn, "the case's ControlNet", unet, "unet_sd15 case");
    const Tensor eps = unet.forward(x, t, ctx, extra);
    // The case states no tolerance for this tensor: unet_sd15's own eps tolerance.
    out.push_back(gc.compare("unet_eps_with_control", eps, ugc.atol("eps", 1e-4)));
    return out;
}

}  // namespace nuance
