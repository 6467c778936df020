// Reading a golden case folder (../shared/golden format: case.json + io.safetensors + weights) and comparing a
// port's tensors with the reference's, with the case's own tolerances.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/compare.h"
#include "io/weight_file.h"
#include "nn/module.h"

namespace nuance {

// Precision the golden checkers run the models in (`nuance check-golden --precision`): FP32 must PASS every case;
// BF16 reports the cost of bf16 products (the reference tolerances are fp32 ones, so bf16 lines may FAIL).
// A scope object, like OpStatsScope: cases loaded while it lives take its precision.
class GoldenPrecisionScope {
public:
    explicit GoldenPrecisionScope(Precision p);
    ~GoldenPrecisionScope();
    static Precision current();
    GoldenPrecisionScope(const GoldenPrecisionScope&) = delete;
    GoldenPrecisionScope& operator=(const GoldenPrecisionScope&) = delete;

private:
    Precision saved_;
};

class GoldenCase {
public:
    static GoldenCase load(const std::string& dir);
    Precision precision() const { return precision_; }
    // Options to load a model of this case: weight matrices run in the case's precision.
    LoadOptions load_options(const std::string& source) const;
    const std::string& dir() const { return dir_; }
    const std::string& name() const { return name_; }
    const nlohmann::json& meta() const { return meta_; }
    bool has(const std::string& tensor) const { return io_.tensors.count(tensor) > 0; }
    Tensor tensor(const std::string& tensor) const;  // from io.safetensors; Error naming the case if absent
    // The model's config object from case.json "models" (empty object when absent).
    nlohmann::json model_config(const std::string& model) const;
    std::string path(const std::string& file) const { return dir_ + "/" + file; }
    // The case's models as (name, path of its weights file), in case.json order; Error when case.json lacks
    // "models"/"tensors" or a model names no weights file.
    std::vector<std::pair<std::string, std::string>> models() const;
    // suggested_atol for a tensor: tolerance groups are keyed by a prefix of the tensor name ("clip_l",
    // "vae_sd", "odd") or "main" for unprefixed names. Returns `fallback` when the case states none.
    double atol(const std::string& tensor, double fallback) const;
    // Compares got vs the stored reference `tensor`: "<case>/<tensor>" line with max_abs and atol.
    CompareLine compare(const std::string& tensor, const Tensor& got, double atol) const;
    CompareLine compare(const std::string& tensor, const Tensor& got) const { return compare(tensor, got, atol(tensor, 1e-4)); }

private:
    std::string dir_, name_;
    Precision precision_ = Precision::FP32;
    nlohmann::json meta_;
    WeightFile io_;
};

CompareLine skip_line(const std::string& name, const std::string& reason);
CompareLine fail_line(const std::string& name, const std::string& reason);
// Token ids that must match exactly: max_abs = the largest id difference (infinite when the counts differ), and
// `first_bad` as the reason of a failing line (which prompt differed first).
CompareLine compare_ids(const std::string& name, const std::vector<int64_t>& ref, const std::vector<int64_t>& got,
                        const std::string& first_bad);

}  // namespace nuance
