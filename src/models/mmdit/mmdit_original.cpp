#include "models/mmdit/mmdit_original.h"
#include "backends/backend.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

#include "ops/shape_ops.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

enum class Transform { None, SplitQkv, SwapHalves, SwapHalvesIfLast };

// One module: the original name, its diffusers name(s) (three for a fused qkv), and the transform between them.
struct Rule {
    const char* original;
    std::vector<const char*> diffusers;
    Transform transform = Transform::None;
};

const std::vector<Rule>& global_rules() {
    static const std::vector<Rule> r{
        {"x_embedder.proj", {"pos_embed.proj"}},
        {"t_embedder.mlp.0", {"time_text_embed.timestep_embedder.linear_1"}},
        {"t_embedder.mlp.2", {"time_text_embed.timestep_embedder.linear_2"}},
        {"y_embedder.mlp.0", {"time_text_embed.text_embedder.linear_1"}},
        {"y_embedder.mlp.2", {"time_text_embed.text_embedder.linear_2"}},
        {"context_embedder", {"context_embedder"}},
        {"final_layer.linear", {"proj_out"}},
        {"final_layer.adaLN_modulation.1", {"norm_out.linear"}, Transform::SwapHalves},
    };
    return r;
}

// Relative to joint_blocks.N. / transformer_blocks.N.
const std::vector<Rule>& block_rules() {
    static const std::vector<Rule> r{
        {"x_block.attn.qkv", {"attn.to_q", "attn.to_k", "attn.to_v"}, Transform::SplitQkv},
        {"context_block.attn.qkv", {"attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"}, Transform::SplitQkv},
        {"x_block.attn.proj", {"attn.to_out.0"}},
        {"context_block.attn.proj", {"attn.to_add_out"}},
        {"x_block.attn.ln_q", {"attn.norm_q"}},
        {"x_block.attn.ln_k", {"attn.norm_k"}},
        {"context_block.attn.ln_q", {"attn.norm_added_q"}},
        {"context_block.attn.ln_k", {"attn.norm_added_k"}},
        {"x_block.attn2.qkv", {"attn2.to_q", "attn2.to_k", "attn2.to_v"}, Transform::SplitQkv},
        {"x_block.attn2.proj", {"attn2.to_out.0"}},
        {"x_block.attn2.ln_q", {"attn2.norm_q"}},
        {"x_block.attn2.ln_k", {"attn2.norm_k"}},
        {"x_block.adaLN_modulation.1", {"norm1.linear"}},
        {"context_block.adaLN_modulation.1", {"norm1_context.linear"}, Transform::SwapHalvesIfLast},
        {"x_block.mlp.fc1", {"ff.net.0.proj"}},
        {"x_block.mlp.fc2", {"ff.net.2"}},
        {"context_block.mlp.fc1", {"ff_context.net.0.proj"}},
        {"context_block.mlp.fc2", {"ff_context.net.2"}},
    };
    return r;
}

void put(TensorMap& out, const std::string& key, const Tensor& t) {
    NUANCE_CHECK_CODE(out.emplace(key, t).second, Internal, "SD3 key map: two tensors map to '", key, "'");
}

// Original (shift, scale) <-> diffusers (scale, shift): the two row halves exchanged (its own inverse).
Tensor swap_halves(const std::string& name, const Tensor& t) {
    NUANCE_CHECK(t.dim() >= 1 && t.size(0) % 2 == 0, "SD3 checkpoint: tensor '", name, "' ", t.shape(),
                 " does not split into (shift, scale) halves");
    const int64_t h = t.size(0) / 2;
    const Tensor v = dequantize_weight(t);  // an FP8 / block-quantized weight: its values (the rows move)
    return cat({v.narrow(0, h, h), v.narrow(0, 0, h)}, 0);
}

// A decimal block index of at most 4 digits, no leading zero ("01" is not a module index).
bool is_block_index(const std::string& num) {
    return !num.empty() && num.size() <= 4 && (num.size() == 1 || num[0] != '0') &&
           std::all_of(num.begin(), num.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// "joint_blocks.12.x_block.attn.qkv.weight" -> (12, "x_block.attn.qkv.weight"); -1 when not a block key.
std::pair<int64_t, std::string> block_of(const std::string& rest, const std::string& blocks) {
    if (!rest.starts_with(blocks)) return {-1, rest};
    const size_t dot = rest.find('.', blocks.size());
    const std::string num = rest.substr(blocks.size(), dot == std::string::npos ? std::string::npos : dot - blocks.size());
    const bool ok = is_block_index(num) && dot != std::string::npos;
    NUANCE_CHECK_CODE(ok, Unsupported, "SD3 checkpoint: tensor '", rest, "' has no block index");
    return {std::stoll(num), rest.substr(dot + 1)};
}

// Splits "a.b.weight" into ("a.b", "weight").
std::pair<std::string, std::string> module_param(const std::string& k) {
    const size_t dot = k.rfind('.');
    if (dot == std::string::npos) return {k, ""};
    return {k.substr(0, dot), k.substr(dot + 1)};
}

const Rule* find_rule(const std::vector<Rule>& rules, const std::string& module, bool original) {
    for (const Rule& r : rules)
        if (original ? module == r.original : module == r.diffusers[0]) return &r;
    return nullptr;
}

// Indices of block keys, checked to be 0..n-1; returns n.
int64_t block_count(const std::set<int64_t>& idx, const char* what) {
    int64_t expect = 0;
    for (int64_t i : idx) {
        NUANCE_CHECK_CODE(i == expect, Unsupported, "SD3 checkpoint: ", what, " ", expect, " is missing (found up to ",
                          *idx.rbegin(), ")");
        ++expect;
    }
    return expect;
}

}  // namespace

bool is_original_mmdit(const TensorMap& t) {
    const std::string p = kMMDiTOriginalPrefix;
    for (const char* k : {"joint_blocks.0.", "x_embedder."}) {
        auto it = t.lower_bound(p + k);
        if (it != t.end() && it->first.starts_with(p + k)) return true;
    }
    return false;
}

TensorMap mmdit_from_original(const TensorMap& t) {
    const std::string prefix = kMMDiTOriginalPrefix;
    TensorMap src;
    std::set<int64_t> blocks;
    for (auto it = t.lower_bound(prefix); it != t.end() && it->first.starts_with(prefix); ++it) {
        const std::string rest = it->first.substr(prefix.size());
        const auto [b, _] = block_of(rest, "joint_blocks.");
        if (b >= 0) blocks.insert(b);
        src.emplace(rest, it->second);
    }
    NUANCE_CHECK_CODE(!src.empty(), InvalidArgument, "SD3 checkpoint: no '", prefix, "*' tensors");
    NUANCE_CHECK_CODE(!blocks.empty(), InvalidArgument, "SD3 checkpoint: no '", prefix, "joint_blocks.N.*' tensors");
    const int64_t last = block_count(blocks, "joint block") - 1;

    TensorMap out;
    for (const auto& [rest, v] : src) {
        const std::string name = prefix + rest;
        if (rest == "pos_embed") {
            put(out, "pos_embed.pos_embed", v);
            continue;
        }
        const auto [b, in_block] = block_of(rest, "joint_blocks.");
        const auto [module, param] = module_param(in_block);
        const Rule* r = find_rule(b >= 0 ? block_rules() : global_rules(), module, true);
        NUANCE_CHECK_CODE(r && (param == "weight" || param == "bias"), Unsupported,
                          "SD3 checkpoint: unknown tensor '", name, "' (not part of an SD3 / SD3.5 MMDiT)");
        const std::string dprefix = b >= 0 ? str("transformer_blocks.", b, ".") : std::string();
        switch (r->transform) {
            case Transform::None: put(out, dprefix + r->diffusers[0] + "." + param, v); break;
            case Transform::SwapHalves: put(out, dprefix + r->diffusers[0] + "." + param, swap_halves(name, v)); break;
            case Transform::SwapHalvesIfLast:
                put(out, dprefix + r->diffusers[0] + "." + param, b == last ? swap_halves(name, v) : v);
                break;
            case Transform::SplitQkv: {
                NUANCE_CHECK(v.dim() >= 1 && v.size(0) % 3 == 0, "SD3 checkpoint: tensor '", name, "' ", v.shape(),
                             " does not split into q, k, v (rows not a multiple of 3)");
                const int64_t n = v.size(0) / 3;
                for (int64_t i = 0; i < 3; ++i) put(out, dprefix + r->diffusers[i] + "." + param, v.narrow(0, i * n, n));
                break;
            }
        }
    }
    return out;
}

std::string mmdit_original_name(const std::string& key) {
    const std::string prefix = kMMDiTOriginalPrefix;
    if (key == "pos_embed.pos_embed") return prefix + "pos_embed";
    int64_t b = -1;
    std::string in_block = key;
    try {
        std::tie(b, in_block) = block_of(key, "transformer_blocks.");
    } catch (const Error&) {
        return key;
    }
    const auto [module, param] = module_param(in_block);
    for (const Rule& r : b >= 0 ? block_rules() : global_rules())
        for (const char* d : r.diffusers)
            if (module == d)
                return prefix + (b >= 0 ? str("joint_blocks.", b, ".") : std::string()) + r.original + "." + param;
    return key;
}

TensorMap mmdit_to_original(const TensorMap& d) {
    const std::string prefix = kMMDiTOriginalPrefix;
    std::set<int64_t> blocks;
    for (const auto& [k, v] : d) {
        const auto [b, _] = block_of(k, "transformer_blocks.");
        if (b >= 0) blocks.insert(b);
    }
    NUANCE_CHECK(!blocks.empty(), "SD3 transformer: no 'transformer_blocks.N.*' tensors");
    const int64_t last = block_count(blocks, "transformer block") - 1;
    TensorMap out;
    std::set<std::string> used;
    auto take = [&](const std::string& k) -> const Tensor* {
        auto it = d.find(k);
        if (it == d.end()) return nullptr;
        used.insert(k);
        return &it->second;
    };
    auto convert = [&](const Rule& r, int64_t b) {
        const std::string dp = b >= 0 ? str("transformer_blocks.", b, ".") : std::string();
        const std::string op = prefix + (b >= 0 ? str("joint_blocks.", b, ".") : std::string()) + r.original + ".";
        for (const char* param : {"weight", "bias"}) {
            const Tensor* first = take(dp + r.diffusers[0] + "." + param);
            if (!first) continue;
            if (r.transform == Transform::SplitQkv) {
                std::vector<Tensor> parts{*first};
                for (int i = 1; i < 3; ++i) {
                    const Tensor* p = take(dp + r.diffusers[i] + "." + param);
                    NUANCE_CHECK(p, "SD3 transformer: '", dp + r.diffusers[0] + "." + param, "' without '",
                                 dp + r.diffusers[i] + "." + param, "'");
                    parts.push_back(*p);
                }
                put(out, op + param, cat(parts, 0));
            } else {
                const bool swap = r.transform == Transform::SwapHalves ||
                                  (r.transform == Transform::SwapHalvesIfLast && b == last);
                put(out, op + param, swap ? swap_halves(dp + r.diffusers[0] + "." + param, *first) : *first);
            }
        }
    };
    if (const Tensor* pos = take("pos_embed.pos_embed")) put(out, prefix + "pos_embed", *pos);
    for (const Rule& r : global_rules()) convert(r, -1);
    for (int64_t b = 0; b <= last; ++b)
        for (const Rule& r : block_rules()) convert(r, b);
    for (const auto& [k, v] : d)
        NUANCE_CHECK_CODE(used.count(k), Unsupported, "SD3 transformer: tensor '", k,
                          "' has no place in the original layout");
    return out;
}

}  // namespace nuance
