// Shape letters: B batch, L tokens, C/in channels, O/out channels, r rank, kh/kw kernel.
#include "train/lora_network.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/mt19937.h"
#include "io/safetensors.h"
#include "train/dataset.h"

namespace nuance {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string underscored(std::string s) {
    std::replace(s.begin(), s.end(), '.', '_');
    return s;
}

// The part of a UNet module name that says which diffusers block class owns it.
bool in_attention_block(const std::string& m) {  // Transformer2DModel: <...>.attentions.N.<...>
    return contains(m, ".attentions.") || m.rfind("mid_block.attentions.", 0) == 0;
}
bool in_resnet_or_sampler(const std::string& m) {  // ResnetBlock2D, Downsample2D, Upsample2D
    return contains(m, "resnets.") || contains(m, ".downsamplers.") || contains(m, ".upsamplers.");
}

}  // namespace

LoraTargets parse_lora_targets(const std::string& s) {
    LoraTargets t;
    t.text = s;
    NUANCE_CHECK(!s.empty(), "--targets is empty (expected attn, attn+ff, all-linear, optionally +conv)");
    size_t start = 0;
    bool any = false;
    while (start <= s.size()) {
        const size_t plus = s.find('+', start);
        const std::string part = s.substr(start, plus == std::string::npos ? std::string::npos : plus - start);
        if (part.empty()) {
            // "+conv": the leading '+' adds to kohya's default (all-linear)
            NUANCE_CHECK(start == 0 && plus == 0, "--targets '", s, "': an empty part (expected parts attn, ff, ",
                         "all-linear, conv joined by '+')");
            t.all_linear = true;
        } else if (part == "attn") {
            t.attn = true;
        } else if (part == "ff") {
            t.ff = true;
        } else if (part == "all-linear") {
            t.all_linear = true;
        } else if (part == "conv") {
            t.conv = true;
        } else {
            fail(ErrorCode::InvalidArgument, "--targets '", s, "': unknown part '", part,
                 "' (expected attn, ff, all-linear, conv joined by '+', e.g. attn+ff or all-linear+conv)");
        }
        any = any || !part.empty();
        if (plus == std::string::npos) break;
        start = plus + 1;
    }
    NUANCE_CHECK(any, "--targets '", s, "' names no layers");
    return t;
}

bool lora_unet_target(const std::string& m, const Shape& w, const LoraTargets& t) {
    const bool linear = w.size() == 2;
    const bool conv = w.size() == 4;
    if (!linear && !conv) return false;
    const bool conv1x1 = conv && w[2] == 1 && w[3] == 1;
    if (in_attention_block(m)) {
        const bool attn = (contains(m, ".attn1.") || contains(m, ".attn2.")) &&
                          (ends_with(m, ".to_q") || ends_with(m, ".to_k") || ends_with(m, ".to_v") ||
                           ends_with(m, ".to_out.0"));
        const bool ff = ends_with(m, ".ff.net.0.proj") || ends_with(m, ".ff.net.2");
        if (t.all_linear && (linear || conv1x1)) return true;
        return (t.attn && attn) || (t.ff && ff);
    }
    return t.conv && in_resnet_or_sampler(m);
}

bool lora_te_target(const std::string& m) {
    return contains(m, ".self_attn.") ? (ends_with(m, "q_proj") || ends_with(m, "k_proj") || ends_with(m, "v_proj") ||
                                         ends_with(m, "out_proj"))
                                      : (contains(m, ".mlp.") && (ends_with(m, ".fc1") || ends_with(m, ".fc2")));
}

LoraNetwork::LoraNetwork(Module& unet, Module* te, const LoraConfig& cfg, uint64_t seed) : cfg_(cfg) {
    NUANCE_CHECK(cfg.rank >= 1 && cfg.rank <= kMaxLoraRank, "LoRA: --rank must be in 1..", kMaxLoraRank, ", got ",
                 cfg.rank);
    NUANCE_CHECK(std::isfinite(cfg.alpha) && cfg.alpha > 0 && cfg.alpha <= 1e6, "LoRA: --alpha must be a finite ",
                 "number in (0, 1e6], got ", cfg.alpha);
    NUANCE_CHECK(cfg.conv_rank >= 0 && cfg.conv_rank <= kMaxLoraRank, "LoRA: --conv-rank must be in 0..",
                 kMaxLoraRank, ", got ", cfg.conv_rank);
    NUANCE_CHECK(std::isfinite(cfg.conv_alpha) && cfg.conv_alpha >= 0 && cfg.conv_alpha <= 1e6, "LoRA: --conv-alpha ",
                 "must be a finite number in [0, 1e6], got ", cfg.conv_alpha);
    NUANCE_CHECK((cfg.conv_rank == 0 && cfg.conv_alpha == 0) || cfg.targets.conv, "LoRA: --conv-rank / --conv-alpha ",
                 "size the adapters of 3x3 convolutions, which --targets '", cfg.targets.text, "' does not select ",
                 "(add +conv)");
    add_component(unet, false, "lora_unet_", seed);
    NUANCE_CHECK(!adapters_.empty(), "LoRA: --targets '", cfg.targets.text, "' selects no layer of the UNet");
    if (te) {
        const size_t before = adapters_.size();
        add_component(*te, true, "lora_te_", seed ^ 0x7e7e7e7eull);
        NUANCE_CHECK(adapters_.size() > before, "LoRA: the text encoder has no self_attn / mlp layers to adapt");
    }
}

void LoraNetwork::add_component(Module& m, bool te, const std::string& prefix, uint64_t seed) {
    Mt19937 rng(seed);
    for_each_param(m, [&](const std::string& name, Param& p) {
        if (!ends_with(name, ".weight") || !p.value.defined()) return;
        const std::string mod = name.substr(0, name.size() - 7);
        const Shape& s = p.value.shape();
        if (s.size() != 2 && s.size() != 4) return;
        if (te ? !(s.size() == 2 && lora_te_target(mod)) : !lora_unet_target(mod, s, cfg_.targets)) return;
        auto a = std::make_unique<Adapter>();
        a->name = prefix + underscored(mod);
        a->module = mod;
        a->text_encoder = te;
        a->base = &p;
        a->conv = s.size() == 4;
        const bool spatial = a->conv && (s[2] > 1 || s[3] > 1);  // kohya's conv_dim: kernels above 1x1
        a->rank = spatial && cfg_.conv_rank > 0 ? cfg_.conv_rank : cfg_.rank;
        a->alpha = spatial && cfg_.conv_rank > 0
                       ? (cfg_.conv_alpha > 0 ? cfg_.conv_alpha : cfg_.alpha * (double)cfg_.conv_rank / (double)cfg_.rank)
                       : cfg_.alpha;
        const int64_t r = a->rank, out = s[0];
        const int64_t fan_in = shape_numel(s) / out;  // in (* kh * kw)
        Shape ds = s, us = a->conv ? Shape{out, r, 1, 1} : Shape{out, r};
        ds[0] = r;
        Tensor d = Tensor::empty(ds, DType::F32);
        const float bound = 1.0f / std::sqrt((float)fan_in);
        float* dp = d.data<float>();
        for (int64_t i = 0; i < d.numel(); ++i) dp[i] = (2.0f * uniform01(rng) - 1.0f) * bound;
        a->down = Param(ds, true);
        a->down.value = d;
        a->up = Param(us, true);
        a->up.value = Tensor::zeros(us, DType::F32);
        by_weight_[&p] = a.get();
        adapters_.push_back(std::move(a));
    });
}

int64_t LoraNetwork::numel() const {
    int64_t n = 0;
    for (const auto& a : adapters_) n += a->down.value.numel() + a->up.value.numel();
    return n;
}

void LoraNetwork::register_params(ParamGrads& g) {
    for (auto& a : adapters_) {
        g.add(a->name + ".lora_down.weight", a->down);
        g.add(a->name + ".lora_up.weight", a->up);
    }
}

std::vector<std::pair<std::string, Tensor>> LoraNetwork::kohya_tensors() const {
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& a : adapters_) {
        t.emplace_back(a->name + ".alpha", Tensor::scalar((float)a->alpha));
        t.emplace_back(a->name + ".lora_down.weight", a->down.value.contiguous());
        t.emplace_back(a->name + ".lora_up.weight", a->up.value.contiguous());
    }
    return t;
}

void LoraNetwork::save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata,
                             DType dtype) const {
    NUANCE_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, "LoRA: cannot save as ",
                 dtype_name(dtype), " (F32, F16 or BF16)");
    std::vector<std::pair<std::string, Tensor>> t = kohya_tensors();
    for (auto& [name, v] : t) v = v.to(dtype);
    save_safetensors(path, t, metadata);
}

Var LoraNetwork::delta(const Linear& layer, const Var& x) {
    auto it = by_weight_.find(&layer.weight);
    if (it == by_weight_.end()) return Var();
    Adapter& a = *it->second;
    // x [.., in] -> [.., r] -> [.., out]
    return linear(linear(x, param_var(a.down)), param_var(a.up)) * (float)a.scale();
}

Var LoraNetwork::delta(const Conv2d& layer, const Var& x) {
    auto it = by_weight_.find(&layer.weight);
    if (it == by_weight_.end()) return Var();
    Adapter& a = *it->second;
    NUANCE_CHECK(layer.p.groups == 1, "LoRA: layer '", a.module, "' is a grouped convolution (", layer.p.groups,
                 " groups), which LoCon does not adapt");
    // x [B, in, H, W] -> down (the layer's kernel, stride, padding) [B, r, H', W'] -> up (1x1) [B, out, H', W']
    return conv2d(conv2d(x, param_var(a.down), Var(), layer.p), param_var(a.up), Var(), Conv2dParams{}) *
           (float)a.scale();
}

}  // namespace nuance
