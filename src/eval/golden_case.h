// Reading a golden case folder (../shared/golden format: case.json + io.safetensors + weights) and comparing a
// port's tensors with the reference's, with the case's own tolerances.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/compare.h"
#include "io/weight_file.h"

namespace nuance {

class GoldenCase {
public:
    static GoldenCase load(const std::string& dir);
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
    nlohmann::json meta_;
    WeightFile io_;
};

CompareLine skip_line(const std::string& name, const std::string& reason);
CompareLine fail_line(const std::string& name, const std::string& reason);

}  // namespace nuance
