// The family-neutral parts of DiffusionModel: conditioning batching, guidance, hash, component sizes.
#include "models/diffusion_model.h"

#include <algorithm>
#include <functional>

#include "backends/backend.h"
#include "core/error.h"
#include "core/quantized_weight.h"
#include "io/weights.h"
#include "nn/module.h"
#include "ops/elementwise.h"
#include "ops/shape_ops.h"

namespace nuance {

const char* guidance_kind_name(GuidanceKind k) {
    switch (k) {
        case GuidanceKind::ClassifierFree: return "cfg";
        case GuidanceKind::Distilled: return "distilled";
        case GuidanceKind::None: return "none";
        case GuidanceKind::ClassConditional: return "class_cfg";
    }
    return "?";
}

bool Conditioning::has(const std::string& n) const {
    auto it = tensors.find(n);
    return it != tensors.end() && it->second.defined();
}

const Tensor& Conditioning::at(const std::string& n) const {
    auto it = tensors.find(n);
    if (it == tensors.end() || !it->second.defined()) {
        std::string names;
        for (const auto& [k, v] : tensors) names += str(names.empty() ? "" : ", ", k);
        fail(ErrorCode::Internal, "conditioning has no tensor '", n, "' (it has: ", names.empty() ? "none" : names,
             ")");
    }
    return it->second;
}

void DiffusionModel::match_for_batch(const std::vector<Conditioning*>&, const ConditioningRequest&) const {}

Conditioning DiffusionModel::batch_conditioning(const std::vector<const Conditioning*>& rows) const {
    NUANCE_CHECK_CODE(!rows.empty(), Internal, "batch_conditioning: no rows");
    if (rows.size() == 1) return *rows[0];
    Conditioning out;
    for (const auto& [name, t0] : rows[0]->tensors) {
        if (!t0.defined()) continue;
        std::vector<Tensor> parts;
        for (const Conditioning* c : rows) {
            const Tensor& t = c->at(name);
            NUANCE_CHECK_CODE(t.dim() == t0.dim() && t.dim() >= 1 &&
                                  std::equal(t.shape().begin() + 1, t.shape().end(), t0.shape().begin() + 1),
                              Internal, "batch_conditioning: '", name, "' rows ", t0.shape(), " and ", t.shape(),
                              " do not stack");
            parts.push_back(t);
        }
        out.tensors[name] = cat(parts, 0);
    }
    return out;
}

Tensor DiffusionModel::combine_guidance(const Tensor& u, const Tensor& c, float scale) const {
    return u + (c - u) * scale;  // eps_u + s (eps_c - eps_u)
}

std::shared_ptr<const ControlNetModel> DiffusionModel::load_control_net(const std::string& path,
                                                                        const std::string& what) const {
    fail(ErrorCode::Unsupported, what, " '", path, "': ", family_name(), " models (", name,
         ") take no ControlNet (ControlNets exist for SD1.x, SD2.x and SDXL)");
}

void DiffusionModel::validate_control_net(const ControlNetModel&, const std::string& what) const {
    fail(ErrorCode::Unsupported, what, ": ", family_name(), " models (", name,
         ") take no ControlNet (ControlNets exist for SD1.x, SD2.x and SDXL)");
}

Tensor DiffusionModel::guide(const Tensor&, double, const Conditioning&, const StepContext&,
                             const ConditioningRequest&, const Tensor& u, const Tensor& c, float scale) const {
    return combine_guidance(u, c, scale);
}

std::string DiffusionModel::file_hash() const {
    std::lock_guard<std::mutex> lock(hash_->mu);
    if (!hash_->done) {
        hash_->value = file_exists(path) ? file_sha256(path) : std::string();
        hash_->done = true;
    }
    return hash_->value;
}

int64_t parameter_count(Module& m) {
    int64_t n = 0;
    for_each_param(m, [&](const std::string&, Param& p) { n += p.value.defined() ? p.value.numel() : 0; });
    return n;
}

namespace {
size_t release_pages_of(DiffusionModel& m, const std::function<bool(const std::string&)>& which) {
    size_t bytes = 0;
    for (auto& [name, mod] : m.modules())
        if (mod && which(name))
            for_each_param(*mod, [&](const std::string&, Param& p) {
                bytes += release_file_pages(p.value) + release_packed_weight(p.value);
            });
    return bytes;
}
}  // namespace

size_t DiffusionModel::release_text_encoder_weights() const {
    return release_pages_of(const_cast<DiffusionModel&>(*this),
                            [](const std::string& n) { return n.rfind("text_encoder", 0) == 0; });
}

size_t DiffusionModel::release_weights_except_vae() const {
    return release_pages_of(const_cast<DiffusionModel&>(*this), [](const std::string& n) { return n != "vae"; });
}

std::vector<ComponentInfo> DiffusionModel::components() const {
    std::vector<ComponentInfo> out;
    for (auto& [name, mod] : const_cast<DiffusionModel*>(this)->modules())
        if (mod) out.push_back({name, parameter_count(*mod)});
    return out;
}

Tensor DiffusionModel::encode_pixels(const Tensor&, const VaeTiling&, Rng&) const {
    fail(ErrorCode::Unsupported, "model family '", family_name(), "' cannot encode an image tensor (only families ",
         "with inpainting networks do)");
}

}  // namespace nuance
