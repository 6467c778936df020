#include "backends/backend.h"
#include "ops/elementwise.h"

#include <array>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ggml_quants.h"
#include "core/quantized_weight.h"

namespace nuance {

namespace {

CpuBackend& builtin_cpu() {
    static CpuBackend b;
    return b;
}

std::array<Backend*, kDeviceTypes>& registry() {
    static std::array<Backend*, kDeviceTypes> r{&builtin_cpu(), nullptr, nullptr};
    return r;
}

}  // namespace

const char* unary_op_name(UnaryOp op) {
    static const char* const names[] = {"add", "mul", "rsub", "rdiv", "exp", "log", "sqrt", "abs", "square", "pow",
                                        "cos", "sin", "tanh", "sigmoid", "relu", "silu", "gelu", "gelu_tanh",
                                        "quick_gelu", "clamp"};
    const size_t i = (size_t)op;
    return i < std::size(names) ? names[i] : "unary";
}

const char* binary_op_name(BinaryOp op) {
    static const char* const names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    const size_t i = (size_t)op;
    return i < std::size(names) ? names[i] : "binary";
}

void register_backend(DeviceType type, Backend* b) {
    const size_t i = (size_t)type;
    NUANCE_CHECK(i < (size_t)kDeviceTypes, "register_backend: unknown device type ", (int)type);
    if (type == DeviceType::Cpu) {
        registry()[i] = b ? b : &builtin_cpu();
        return;
    }
    registry()[i] = b;
    set_device_memory(type, b);
}

Backend& backend_for(Device d) {
    const size_t i = (size_t)d.type;
    Backend* b = i < (size_t)kDeviceTypes ? registry()[i] : nullptr;
    NUANCE_CHECK_CODE(b != nullptr, Unsupported, current_op_name(), ": no backend is registered for device ", d.str(),
                      " (this build has: cpu)");
    return *b;
}

Backend& cpu_backend() { return builtin_cpu(); }

Device op_device(const char* op, std::initializer_list<const Tensor*> operands) {
    Device dev = Device::cpu();
    for (const Tensor* t : operands) {
        if (!t->defined()) continue;
        const Device d = t->device();
        if (d.is_cpu() || d == dev) continue;
        NUANCE_CHECK(dev.is_cpu(), op, ": operands on two devices, ", dev.str(), " and ", d.str());
        dev = d;
    }
    return dev;
}

Precision resolve_precision(Precision p, Device d) { return backend_for(d).resolve_precision(p); }
Precision default_precision(Device d) { return backend_for(d).default_precision(); }

// The CPU's own caches, and those of the other devices' backends (a replacement registered for the CPU, such as
// a test's recording wrapper, shares the built-in one's caches).
void clear_packed_weights() {
    builtin_cpu().clear_packed_weights();
    for (size_t i = 1; i < registry().size(); ++i)
        if (registry()[i]) registry()[i]->clear_packed_weights();
}

size_t release_packed_weight(const Tensor& w) {
    size_t n = builtin_cpu().release_packed_weight(w);
    for (size_t i = 1; i < registry().size(); ++i)
        if (registry()[i]) n += registry()[i]->release_packed_weight(w);
    return n;
}

size_t packed_weights_bytes() {
    size_t n = builtin_cpu().packed_weights_bytes();
    for (size_t i = 1; i < registry().size(); ++i)
        if (registry()[i]) n += registry()[i]->packed_weights_bytes();
    return n;
}

size_t prune_packed_weights() {
    size_t n = builtin_cpu().prune_packed_weights();
    for (size_t i = 1; i < registry().size(); ++i)
        if (registry()[i]) n += registry()[i]->prune_packed_weights();
    return n;
}

size_t packed_weights_over_budget_bytes() {
    size_t n = builtin_cpu().packed_weights_over_budget_bytes();
    for (size_t i = 1; i < registry().size(); ++i)
        if (registry()[i]) n += registry()[i]->packed_weights_over_budget_bytes();
    return n;
}

// Declared with the block formats (backends/cpu/ggml_quants.h); runs on the payload's device.
Tensor QuantizedTensor::dequantize() const {
    OpNameScope op_name("dequantize");
    return backend_for(packed.defined() ? packed.device() : Device::cpu()).dequantize(type, packed, shape);
}

Tensor dequantize_weight(const Tensor& t) {
    const auto v = quantized_weight_view(t);
    if (!v) {
        NUANCE_CHECK(!is_quantized_storage(t), "dequantize: ", quantized_weight_str(t),
                     " is a view of a quantized weight that no longer holds whole rows of blocks");
        return t;
    }
    OpNameScope op_name("dequantize");
    Tensor d = backend_for(t.device())
                   .dequantize((GgmlType)v->ggml_type, quantized_weight_payload(t), {v->rows, v->row_length})
                   .view(t.shape());
    return v->scale == 1.0f ? d : mul(d, v->scale);  // a scaled FP8 weight's values
}

}  // namespace nuance
