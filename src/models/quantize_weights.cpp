#include "models/quantize_weights.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/ggml_quants.h"
#include "core/allocator.h"
#include "core/checked.h"
#include "core/error.h"
#include "core/quantized_weight.h"
#include "nn/module.h"

namespace nuance {

std::string QuantizeWeightsSummary::describe() const {
    int64_t n = 0;
    std::string types;
    for (const auto& [t, c] : tensors_per_type) {
        n += c;
        types += str(types.empty() ? "" : ", ", c, " ", t);
    }
    char sizes[96];
    std::snprintf(sizes, sizeof sizes, "%.0f MB -> %.0f MB", (double)bytes_before / 1e6, (double)bytes_after / 1e6);
    std::string s = str(recipe, ": ", n, " weights quantized");
    if (!types.empty()) s += str(" (", types, ")");
    s += str(", ", sizes);
    if (kept) s += str(", ", kept, " kept as they were");
    if (already_quantized) s += str(", ", already_quantized, " already quantized");
    char t[32];
    std::snprintf(t, sizeof t, "%.2f", seconds);
    return s + str(", in ", t, " s");
}

std::string quantize_rules_arch(const std::string& family) {
    if (family == "sd1" || family == "sd2") return "sd1";
    return family;  // sdxl, sd3, flux, dit: the names the rules know
}

QuantizeRecipe parse_weight_type(const std::string& name, const char* what) {
    const std::optional<QuantizeRecipe> r = parse_quantize_recipe(name);
    const bool block = r && ggml_type_info(r->type).block > 1;
    NUANCE_CHECK(block, what, " '", name, "' is not a quantized type; one of: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, ",
                 "q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m ",
                 "(weights already run in their file's dtype: f16 / bf16 / f32 change nothing)");
    return *r;
}

namespace {

struct Slot {
    std::string name;  // "text_encoder/text_model.encoder.layers.0.self_attn.v_proj.weight" (sorting key)
    std::string rule_name;
    Param* p = nullptr;
    GgufComponent component = GgufComponent::Other;
};

}  // namespace

QuantizeWeightsSummary quantize_model_weights(DiffusionModel& m, const QuantizeRecipe& recipe, bool text_encoders) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const std::optional<GgmlType> t :
         {std::optional(recipe.type), recipe.attn_v, recipe.attn_v_later, recipe.attn_qkv, recipe.ffn_down})
        NUANCE_CHECK(!t || (can_quantize(*t) && ggml_type_info(*t).block > 1), "quantize: type ",
                     ggml_type_info(*t).name, " is not a block type with a quantizer (", recipe.name, ")");
    QuantizeWeightsSummary sum;
    sum.recipe = recipe.name;
    const std::string arch = quantize_rules_arch(m.family_name());
    // Every product weight first, sorted by name per component: the recipes' "first N value projections" count in
    // sorted order, as the files nuance quantize writes do.
    std::vector<Slot> slots;
    for (auto& [mod_name, mod] : m.modules()) {
        if (!mod) continue;
        const bool denoiser = mod_name == "unet" || mod_name == "transformer";
        const bool te = mod_name.rfind("text_encoder", 0) == 0;
        if (!denoiser && !(te && text_encoders)) continue;
        for_each_param(*mod, [&](const std::string& name, Param& p) {
            if (!p.matrix || !p.value.defined()) return;
            slots.push_back({mod_name + "/" + name, name, &p,
                             denoiser ? GgufComponent::Denoiser : GgufComponent::TextEncoder});
        });
    }
    std::sort(slots.begin(), slots.end(), [](const Slot& a, const Slot& b) {
        if (a.component != b.component) return a.component < b.component;
        return a.name < b.name;
    });
    int attn_v_seen = 0, attn_v_seen_te = 0;
    const UncachedScope uncached;
    for (const Slot& s : slots) {
        Param& p = *s.p;
        const Tensor w = p.value;
        if (is_quantized_storage(w)) {
            ++sum.already_quantized;
            continue;
        }
        const bool host = w.device().is_cpu();
        const GgmlType t = host && dtype_is_float(w.dtype())
                               ? resident_tensor_type(arch, s.rule_name, w.shape(), s.component, recipe,
                                                      s.component == GgufComponent::Denoiser ? attn_v_seen : attn_v_seen_te)
                               : GgmlType::F32;
        if (t == GgmlType::F32) {
            ++sum.kept;
            continue;
        }
        const GgmlTypeInfo& ti = ggml_type_info(t);
        const int64_t rows = w.size(0), k = w.numel() / rows, row_bytes = k / ti.block * ti.bytes;
        const size_t bytes = mul_or_throw<size_t>((size_t)rows, (size_t)row_bytes, "quantize: weight size");
        // One f32 copy of this weight at a time (given back to the system, not to the tensor cache: no step asks
        // for these sizes again); the blocks go to their own pages, exactly their size.
        const Tensor f = w.f32().contiguous();
        std::shared_ptr<uint8_t> blocks = large_buffer(bytes);
        const float* src = f.data<float>();
        uint8_t* dst = blocks.get();
#pragma omp parallel for schedule(static) if (rows * k > (1 << 16))
        for (int64_t r = 0; r < rows; ++r) quantize_row(t, src + r * k, dst + r * row_bytes, k);
        Tensor h = make_quantized_weight((uint32_t)t, ti.name, ti.block, ti.bytes, dst, bytes, blocks, w.shape());
        sum.bytes_before += w.nbytes();
        sum.bytes_after += bytes;
        sum.tensors_per_type[ggml_type_info(t).name] += 1;
        p.value = std::move(h);
        release_packed_weight(w);
        release_file_pages(w);
    }
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

}  // namespace nuance
