// Golden check of the noise streams (torch CPU exact, CUDA Philox <= 1e-6; the `rng` case).
#include "eval/golden/rng_golden.h"

#include "core/rng.h"
#include "eval/golden_case.h"

namespace nuance {

std::vector<CompareLine> check_golden_rng(const std::string& dir) {
    const GoldenCase gc = GoldenCase::load(dir);
    std::vector<CompareLine> out;
    for (const auto& c : gc.meta()["cases"]) {
        const std::string name = c["name"].get<std::string>();
        const std::string dev = c["device"].get<std::string>();
        const uint64_t seed = c["seed"].get<uint64_t>();
        Shape shape;
        for (const auto& d : c["shape"]) shape.push_back(d.get<int64_t>());
        const RngKind kind = parse_rng_kind(dev);
        const double atol = kind == RngKind::Cpu ? 0.0 : 1e-6;
        auto rng = make_rng(kind, seed);
        if (gc.has(name + "/first")) {
            const Tensor a = rng->randn(shape);
            const Tensor b = rng->randn(shape);
            out.push_back(gc.compare(name + "/first", a, atol));
            out.push_back(gc.compare(name + "/second", b, atol));
        } else {
            out.push_back(gc.compare(name, rng->randn(shape), atol));
        }
    }
    return out;
}

}  // namespace nuance
