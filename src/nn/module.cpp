#include "nn/module.h"

#include "backends/backend.h"
#include "core/quantized_weight.h"

#include <cmath>
#include <random>
#include <set>

namespace nuance {

namespace {
struct FnVisitor : ParamVisitor {
    std::function<void(const std::string&, Param&)> f;
    void param(const std::string& n, Param& p) override { f(n, p); }
};
}  // namespace

void for_each_param(Module& m, const std::function<void(const std::string&, Param&)>& f) {
    FnVisitor v;
    v.f = f;
    m.visit(v);
}

std::vector<std::string> load_module(Module& m, const std::map<std::string, Tensor>& tensors, const LoadOptions& o) {
    std::set<std::string> used;
    const std::string src = o.source.empty() ? std::string("checkpoint") : "'" + o.source + "'";
    for_each_param(m, [&](const std::string& name, Param& p) {
        auto it = tensors.find(name);
        if (it == tensors.end()) {
            if (o.allow_missing) return;
            fail(ErrorCode::InvalidArgument, src, " is missing tensor '", name, "' (expected shape ", p.shape, ")");
        }
        used.insert(name);
        // A quantized weight (core/quantized_weight.h) stays packed where a product uses it as stored; any other
        // parameter (norms, biases, embeddings, or a load that converts every weight) gets its values.
        const bool keep_packed = p.matrix && o.matrices_as_stored && quantized_weight_view(it->second).has_value();
        const Tensor t = keep_packed ? it->second : dequantize_weight(it->second);
        if (keep_packed) {
            NUANCE_CHECK(t.numel() == shape_numel(p.shape) && !p.shape.empty() && p.shape[0] == t.size(0), src,
                         ": tensor '", name, "': expected ", p.shape, ", got ", t.shape(), " (",
                         quantized_weight_str(t), ")");
            p.value = t.shape() == p.shape ? t : quantized_weight_reshape(t, p.shape);
            p.compute = o.matrix_compute;
            return;
        }
        Tensor v = t;
        if (t.shape() != p.shape) {
            NUANCE_CHECK(t.numel() == shape_numel(p.shape), src, ": tensor '", name, "': expected ", p.shape, ", got ",
                         t.shape());
            v = t.reshape(p.shape);
        }
        NUANCE_CHECK(dtype_is_float(v.dtype()), src, ": tensor '", name, "' has dtype ", dtype_name(v.dtype()),
                     ", expected a float type");
        if (p.matrix && o.matrices_as_stored) {
            p.value = v.contiguous();
            p.compute = o.matrix_compute;
        } else {
            p.value = v.to(o.compute).contiguous();
            p.compute = p.matrix ? o.matrix_compute : Precision::FP32;
        }
    });
    std::vector<std::string> unused;
    for (const auto& [k, _] : tensors)
        if (!used.count(k)) unused.push_back(k);
    return unused;
}

void init_random(Module& m, uint64_t seed, float std) {
    std::mt19937_64 gen(seed);
    for_each_param(m, [&](const std::string& name, Param& p) {
        Tensor t = Tensor::empty(p.shape, DType::F32);
        float* d = t.data<float>();
        const int64_t n = t.numel();
        const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
        const bool is_norm = name.find("norm") != std::string::npos && !is_bias && p.shape.size() == 1;
        if (is_norm) {
            for (int64_t i = 0; i < n; ++i) d[i] = 1.0f;
        } else if (is_bias) {
            for (int64_t i = 0; i < n; ++i) d[i] = 0.0f;
        } else {
            // Fan-in scaled so activations keep unit scale through deep random networks.
            int64_t fan_in = 1;
            for (size_t i = 1; i < p.shape.size(); ++i) fan_in *= p.shape[i];
            const float s = p.shape.size() >= 2 ? 1.0f / std::sqrt((float)fan_in) : std;
            std::normal_distribution<float> nd(0.0f, s);
            for (int64_t i = 0; i < n; ++i) d[i] = nd(gen);
        }
        p.value = t;
    });
}

std::vector<std::pair<std::string, Tensor>> state_dict(Module& m) {
    std::vector<std::pair<std::string, Tensor>> out;
    for_each_param(m, [&](const std::string& name, Param& p) {
        if (p.defined()) out.emplace_back(name, p.value);
    });
    return out;
}

void to_device(Module& m, Device device) {
    for_each_param(m, [&](const std::string&, Param& p) {
        if (p.value.defined()) p.value = p.value.to(device);
    });
}

}  // namespace nuance
