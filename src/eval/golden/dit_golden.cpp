#include "eval/golden/dit_golden.h"

#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/dit/dit_load.h"

namespace nuance {

std::vector<CompareLine> check_golden_dit(const std::string& case_dir) {
    const GoldenCase gc = GoldenCase::load(case_dir);
    const auto models = gc.models();
    NUANCE_CHECK(models.size() == 1, "golden case '", gc.name(), "': expected one DiT model, got ", models.size());
    const auto& [name, wpath] = models.front();
    const WeightFile wf = load_safetensors(wpath);
    const nlohmann::json cfg = gc.model_config(name);
    DiTLoadOptions opt;
    opt.load = gc.load_options(wpath);
    const LoadedDiT dit = load_dit_tensors(wf.tensors, wpath, opt, &cfg);
    const Tensor out = dit.model->forward(gc.tensor("hidden_states"), gc.tensor("timestep"), gc.tensor("class_labels"));
    return {gc.compare("out", out)};
}

}  // namespace nuance
