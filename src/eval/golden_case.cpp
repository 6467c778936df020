#include "eval/golden_case.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "io/safetensors.h"
#include "io/weights.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {
thread_local Precision g_golden_precision = Precision::FP32;
}  // namespace

GoldenPrecisionScope::GoldenPrecisionScope(Precision p) : saved_(g_golden_precision) { g_golden_precision = p; }
GoldenPrecisionScope::~GoldenPrecisionScope() { g_golden_precision = saved_; }
Precision GoldenPrecisionScope::current() { return g_golden_precision; }

LoadOptions GoldenCase::load_options(const std::string& source) const {
    LoadOptions o;
    o.source = source;
    o.matrix_compute = precision_;
    return o;
}

GoldenCase GoldenCase::load(const std::string& dir) {
    GoldenCase c;
    c.dir_ = dir;
    c.precision_ = GoldenPrecisionScope::current();
    std::ifstream f(dir + "/case.json");
    NUANCE_CHECK_CODE(f.good(), NotFound, "golden case '", dir, "' has no case.json");
    try {
        c.meta_ = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
        fail(ErrorCode::InvalidArgument, "golden case '", dir, "': case.json is not valid JSON (", e.what(), ")");
    }
    c.name_ = c.meta_.value("case", std::string());
    if (c.name_.empty()) {
        const auto slash = dir.find_last_of('/');
        c.name_ = slash == std::string::npos ? dir : dir.substr(slash + 1);
    }
    // Weight-only cases (original_format) have no io.safetensors.
    if (file_exists(dir + "/io.safetensors")) c.io_ = load_safetensors(dir + "/io.safetensors");
    return c;
}

Tensor GoldenCase::tensor(const std::string& t) const {
    auto it = io_.tensors.find(t);
    NUANCE_CHECK_CODE(it != io_.tensors.end(), NotFound, "golden case '", name_, "' has no tensor '", t, "'");
    return it->second;
}

nlohmann::json GoldenCase::model_config(const std::string& model) const {
    if (meta_.contains("models") && meta_["models"].contains(model) && meta_["models"][model].contains("config"))
        return meta_["models"][model]["config"];
    return nlohmann::json::object();
}

std::vector<std::pair<std::string, std::string>> GoldenCase::models() const {
    const auto& c = meta_;
    NUANCE_CHECK(c.is_object() && c.contains("models") && c["models"].is_object() && c.contains("tensors") &&
                     c["tensors"].is_object(),
                 "'", dir_, "/case.json' lacks 'models' or 'tensors'");
    std::vector<std::pair<std::string, std::string>> out;
    for (auto m = c["models"].begin(); m != c["models"].end(); ++m) {
        NUANCE_CHECK(m.value().contains("weights") && m.value()["weights"].is_string(), name_, " case: model '",
                     m.key(), "' has no weights file");
        out.emplace_back(m.key(), path(m.value()["weights"].get<std::string>()));
    }
    return out;
}

double GoldenCase::atol(const std::string& t, double fallback) const {
    if (!meta_.contains("tolerance") || !meta_["tolerance"].is_object()) return fallback;
    const auto& tol = meta_["tolerance"];
    for (auto it = tol.begin(); it != tol.end(); ++it) {
        const std::string& g = it.key();
        if (!it.value().is_object() || !it.value().contains("suggested_atol")) continue;
        const auto& sa = it.value()["suggested_atol"];
        std::string key;
        if (t.size() > g.size() && t.compare(0, g.size() + 1, g + ".") == 0) key = t.substr(g.size() + 1);
        else if (g == "main" && t.find('.') == std::string::npos) key = t;
        else if (tol.size() == 1) key = t;
        if (!key.empty() && sa.contains(key) && sa[key].is_number()) return sa[key].get<double>();
    }
    return fallback;
}

CompareLine GoldenCase::compare(const std::string& t, const Tensor& got, double atol) const {
    CompareLine l;
    l.name = name_ + "/" + t;
    l.atol = atol;
    const Tensor ref = tensor(t);
    if (got.shape() != ref.shape()) {
        l.max_abs = INFINITY;
        l.reason = str("shape ", got.shape(), " vs reference ", ref.shape());
        return l;
    }
    l.max_abs = max_abs_diff(got, ref);
    l.mean_abs = got.numel() ? mean_all(abs(got - ref)) : 0.0;
    l.pass = std::isfinite(l.max_abs) && l.max_abs <= atol;
    return l;
}

CompareLine skip_line(const std::string& name, const std::string& reason) {
    CompareLine l;
    l.name = name;
    l.skip = true;
    l.reason = reason;
    return l;
}

CompareLine fail_line(const std::string& name, const std::string& reason) {
    CompareLine l;
    l.name = name;
    l.max_abs = INFINITY;
    l.reason = reason;
    return l;
}

CompareLine compare_ids(const std::string& name, const std::vector<int64_t>& ref, const std::vector<int64_t>& got,
                        const std::string& first_bad) {
    CompareLine l;
    l.name = name;
    if (ref.size() != got.size()) {
        l.max_abs = INFINITY;
        l.reason = str(got.size(), " ids vs ", ref.size(), " in the reference");
        return l;
    }
    for (size_t i = 0; i < ref.size(); ++i) l.max_abs = std::max(l.max_abs, (double)std::llabs(ref[i] - got[i]));
    l.pass = l.max_abs == 0;
    if (!l.pass) l.reason = first_bad;
    return l;
}

}  // namespace nuance
