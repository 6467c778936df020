#include "eval/golden/lpips_golden.h"

#include <algorithm>
#include <cmath>

#include "eval/golden_case.h"
#include "eval/lpips.h"
#include "io/safetensors.h"
#include "ops/ops.h"

namespace nuance {

std::vector<CompareLine> check_golden_lpips(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    const nlohmann::json& c = gc.meta();
    NUANCE_CHECK(c.contains("pairs") && c["pairs"].is_object() && !c["pairs"].empty(), "golden case '", dir,
                 "': case.json has no \"pairs\" object");
    std::vector<CompareLine> lines;
    for (const auto& [model, wpath] : gc.models()) {
        const std::string net = model.rfind("lpips_", 0) == 0 ? model.substr(6) : model;
        Lpips m(parse_lpips_net(net));
        load_lpips_tensors(m, load_safetensors(wpath).tensors, wpath);
        for (auto it = c["pairs"].begin(); it != c["pairs"].end(); ++it) {
            const std::string set = it.key();
            LpipsOptions o;
            o.keep_diffs = true;
            o.spatial = true;
            const LpipsResult r = m.forward(gc.tensor(set + ".in0"), gc.tensor(set + ".in1"), o);
            const std::string p = net + "." + set + ".";
            auto check = [&](const std::string& key, const Tensor& got) {
                if (!gc.has(key)) return;
                const double atol = gc.atol(key, NAN);
                if (!std::isnan(atol)) {
                    lines.push_back(gc.compare(key, got, atol));
                    return;
                }
                CompareLine l = gc.compare(key, got, 1e-5 * std::max(1.0, (double)max_abs(gc.tensor(key))));
                if (l.pass) l.reason = "atol derived (no suggested_atol in case.json)";
                lines.push_back(std::move(l));
            };
            check(p + "dist", r.dist);
            std::vector<Tensor> per;
            for (const Tensor& t : r.per_layer) per.push_back(t.unsqueeze(0));
            check(p + "per_layer", cat(per, 0));
            check(p + "spatial", r.spatial);
            for (size_t k = 0; k < r.diffs.size(); ++k) {
                check(p + "diffsum" + std::to_string(k), sum(r.diffs[k], 1, true));
                const std::string dk = p + "diff" + std::to_string(k);
                if (!gc.has(dk)) continue;
                const int64_t n = std::min(gc.tensor(dk).size(0), r.diffs[k].size(0));
                check(dk, r.diffs[k].slice(0, 0, n).contiguous());
            }
        }
    }
    return lines;
}

}  // namespace nuance
