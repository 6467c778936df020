#include "eval/golden/unet_golden.h"

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/unet/unet2d.h"

namespace nuance {

std::vector<CompareLine> check_golden_unet(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    const auto& models = gc.meta()["models"];
    NUANCE_CHECK(models.is_object() && models.size() == 1, "golden case '", gc.name(), "': expected one UNet model");
    const std::string model = models.begin().key();
    const std::string weights = models.begin().value().value("weights", std::string("unet.safetensors"));
    const WeightFile wf = load_safetensors(gc.path(weights));
    UNetConfig cfg = UNetConfig::detect(wf.tensors);
    cfg.apply_json(gc.model_config(model));
    UNet2DConditionModel unet(cfg);
    load_module(unet, wf.tensors, gc.load_options(gc.path(weights)));
    return check_golden_unet_model(gc, unet);
}

std::vector<CompareLine> check_golden_unet_model(const GoldenCase& gc, const UNet2DConditionModel& unet) {
    std::vector<CompareLine> out;
    for (const std::string prefix : {"", "odd."}) {
        if (!gc.has(prefix + "sample")) continue;
        UNetExtra extra;
        if (gc.has(prefix + "text_embeds")) extra.text_embeds = gc.tensor(prefix + "text_embeds");
        if (gc.has(prefix + "time_ids")) extra.time_ids = gc.tensor(prefix + "time_ids");
        const Tensor eps = unet.forward(gc.tensor(prefix + "sample"), gc.tensor(prefix + "timestep"),
                                        gc.tensor(prefix + "encoder_hidden_states"), extra);
        out.push_back(gc.compare(prefix + "eps", eps));
    }
    return out;
}

}  // namespace nuance
