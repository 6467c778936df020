#include "eval/golden/mmdit_golden.h"

#include <cmath>

#include "eval/golden_case.h"
#include "io/weights.h"
#include "models/mmdit/mmdit_load.h"

namespace nuance {

std::vector<CompareLine> check_golden_sd3(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::vector<CompareLine> lines;
    for (const auto& [name, wpath] : gc.models()) {
        std::vector<std::pair<std::string, std::string>> files{{wpath, ""}};
        const std::string f16 = wpath.substr(0, wpath.size() - std::string(".safetensors").size()) + "_f16.safetensors";
        if (wpath.ends_with(".safetensors") && file_exists(f16)) files.emplace_back(f16, "[f16 file]");
        const std::string p = name + ".";
        const double atol = gc.atol(p + "out", NAN);
        for (const auto& [file, tag] : files) {
            SD3TransformerWeights w = read_sd3_transformer(file);
            w.config = gc.model_config(name);
            const auto model = load_sd3_transformer(w, gc.load_options(file).matrix_compute);
            const Tensor out = model->forward(gc.tensor(p + "hidden_states"), gc.tensor(p + "timestep"),
                                              gc.tensor(p + "encoder_hidden_states"), gc.tensor(p + "pooled_projections"));
            CompareLine l = std::isnan(atol) ? fail_line(gc.name() + "/" + p + "out", "case.json has no suggested_atol")
                                             : gc.compare(p + "out", out, atol);
            l.name += tag;
            lines.push_back(l);
        }
    }
    return lines;
}

}  // namespace nuance
