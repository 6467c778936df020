#include "train/qat.h"

#include <cctype>

#include "core/error.h"

namespace nuance {

std::optional<QuantizeRecipe> qat_recipe(const std::string& name) {
    std::string n;
    for (char c : name) n.push_back((char)std::tolower((unsigned char)c));
    return parse_quantize_recipe(n == "int8" ? std::string("q8_0") : n);
}

Tensor fake_quantize(const Tensor& w, GgmlType type, const Shape& stored) {
    NUANCE_CHECK(w.defined() && w.dtype() == DType::F32, "fake_quantize: expected an F32 tensor, got ",
                 w.defined() ? w.str() : std::string("none"));
    int64_t n = 1;
    for (int64_t d : stored) n *= d;
    NUANCE_CHECK(stored.size() == 2 && n == w.numel(), "fake_quantize: ", w.str(), " cannot be stored as ", stored);
    // The export's f16 values, as the quantizer reads them from the file.
    const Tensor exported = w.contiguous().to(DType::F16).f32().contiguous().view(stored);
    return quantize(exported, type).dequantize().view(w.shape());
}

FakeQuantizer::FakeQuantizer(ParamGrads& params, const std::string& prefix, const QuantizeRecipe& recipe) {
    // The quantizer sees the file's names in sorted order (the value-projection rules count them in that order).
    std::map<std::string, ParamGrads::Entry*> unet;
    for (ParamGrads::Entry& e : params.entries())
        if (e.name.rfind(prefix, 0) == 0) unet[e.name.substr(prefix.size())] = &e;
    NUANCE_CHECK(!unet.empty(), "--qat: the model has no parameters named '", prefix, "*'");
    std::map<std::string, Tensor> names;
    for (const auto& [name, e] : unet) names[name] = Tensor();
    const std::string arch = gguf_detect_architecture(names);
    int attn_v_seen = 0;
    for (const auto& [name, e] : unet) {
        const GgufTensorChoice c =
            gguf_tensor_choice(arch, name, e->param->shape, GgufComponent::Denoiser, recipe, attn_v_seen);
        if (c.type == GgmlType::F32 || (c.type == GgmlType::F16 && recipe.type != GgmlType::F16)) continue;
        if (!e->leaf.requires_grad()) continue;  // frozen: nothing trains it
        targets_.push_back({e->param, e->name, c.type, c.stored, Tensor()});
    }
    NUANCE_CHECK(!targets_.empty(), "--qat ", recipe.name, ": `nuance quantize` would quantize none of the model's ",
                 unet.size(), " UNet tensors (rows too short for its blocks?)");
}

void FakeQuantizer::apply() {
    NUANCE_CHECK(!applied_, "FakeQuantizer::apply: already applied");
    for (Target& t : targets_) {
        t.master = t.param->value;
        t.param->value = fake_quantize(t.master, t.type, t.stored);
    }
    applied_ = true;
}

void FakeQuantizer::restore() {
    if (!applied_) return;
    for (Target& t : targets_) {
        t.param->value = t.master;
        t.master = Tensor();
    }
    applied_ = false;
}

int64_t FakeQuantizer::numel() const {
    int64_t n = 0;
    for (const Target& t : targets_) n += t.param->value.numel();
    return n;
}

std::map<std::string, int64_t> FakeQuantizer::tensors_per_type() const {
    std::map<std::string, int64_t> m;
    for (const Target& t : targets_) m[ggml_type_info(t.type).name] += 1;
    return m;
}

}  // namespace nuance
