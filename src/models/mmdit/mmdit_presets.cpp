#include "models/mmdit/mmdit_presets.h"

#include <cmath>

#include "core/rng.h"
#include "io/safetensors.h"
#include "models/mmdit/mmdit.h"
#include "models/mmdit/mmdit_original.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

struct Preset {
    const char* name;
    int64_t depth, head_dim, pos_embed_max_size;
    bool qk_norm;
    int64_t dual_until;  // attn2 in blocks 0..dual_until-1
};

// SD3 models have 64-wide heads and as many heads as blocks (D = 64 * depth); context 4096, pooled 2048.
constexpr Preset kPresets[] = {
    {"sd3-medium", 24, 64, 192, false, 0},
    {"sd3.5-medium", 24, 64, 384, true, 13},
    {"sd3.5-large", 38, 64, 192, true, 0},
    {"tiny", 3, 8, 24, true, 2},
};

}  // namespace

std::vector<std::string> mmdit_preset_names() {
    std::vector<std::string> v;
    for (const Preset& p : kPresets) v.push_back(p.name);
    return v;
}

MMDiTConfig mmdit_preset(const std::string& name) {
    for (const Preset& p : kPresets) {
        if (name != p.name) continue;
        MMDiTConfig c;
        const bool tiny = name == "tiny";
        c.depth = p.depth;
        c.head_dim = p.head_dim;
        c.heads = tiny ? 4 : p.depth;
        c.hidden = c.heads * c.head_dim;
        c.pos_embed_max_size = p.pos_embed_max_size;
        c.qk_norm = p.qk_norm;
        for (int64_t i = 0; i < p.dual_until; ++i) c.dual_attention_layers.push_back(i);
        if (tiny) {
            c.joint_attention_dim = 32;
            c.pooled_projection_dim = 24;
        }
        c.validate();
        return c;
    }
    fail(ErrorCode::InvalidArgument, "unknown SD3 transformer preset '", name, "' (known: ", mmdit_preset_names(), ")");
}

int64_t write_random_mmdit(const std::string& path, const MMDiTConfig& c, DType dtype, uint64_t seed,
                           bool original_layout) {
    NUANCE_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "random SD3 transformer: dtype ",
                 dtype_name(dtype), " (expected F32, F16 or BF16)");
    SD3Transformer2DModel m(c);
    auto rng = make_rng(RngKind::Cpu, seed);
    int64_t params = 0;
    for_each_param(m, [&](const std::string& name, Param& p) {
        Tensor t = rng->randn(p.shape);
        int64_t fan_in = 1;
        for (size_t i = 1; i < p.shape.size(); ++i) fan_in *= p.shape[i];
        if (p.shape.size() == 1 && name.find("norm_") != std::string::npos) t.fill_(1.0f);
        else mul_(t, p.shape.size() >= 2 ? 1.0f / std::sqrt((float)fan_in) : 0.02f);
        p.value = t.to(dtype);
        params += t.numel();
    });
    std::vector<std::pair<std::string, Tensor>> tensors = state_dict(m);
    if (original_layout) {  // renames are views; only the fused qkv and swapped halves are new memory
        const auto orig = mmdit_to_original(std::map<std::string, Tensor>(tensors.begin(), tensors.end()));
        tensors.assign(orig.begin(), orig.end());
    }
    save_safetensors(path, tensors);
    return params;
}

}  // namespace nuance
