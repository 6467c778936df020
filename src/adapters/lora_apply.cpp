// Matching LoRA modules to a model's layers and merging them (lora.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "adapters/lora.h"
#include "backends/backend.h"
#include "core/error.h"
#include "core/quantized_weight.h"
#include "models/convert/original_parts.h"
#include "ops/matmul.h"
#include "models/flux/flux_original.h"
#include "models/mmdit/mmdit_original.h"

namespace nuance {

namespace {

// A layer (or a row range of one: a fused qkv / linear1 of an original layout written into nuance's split layers).
struct Target {
    Param* p = nullptr;
    std::string name;  // the component's module name, for messages
    int64_t row0 = 0, rows = 0;
    Param* bias = nullptr;  // the layer's bias (rows row0.. of it are this target's), when it has one
};
using Slot = std::vector<Target>;

std::string underscored(std::string s) {
    std::replace(s.begin(), s.end(), '.', '_');
    return s;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

struct ComponentIndex {
    std::string name;
    std::map<std::string, Slot> slots;  // underscored module name (own or original layout) -> layers
    std::vector<std::string> examples;  // own module names, for messages
};

// The original single-file name of each weight (UNet: SGM/CompVis; SD3: model.diffusion_model.*; Flux: BFL), or
// nothing when the component has no other layout.
std::map<std::string, std::string> original_names(const std::string& comp, Module& m) {
    std::map<std::string, std::string> out;  // own weight name -> original module name (no ".weight")
    std::vector<std::pair<std::string, Tensor>> sd;
    bool flux = false, sd3 = false;
    for_each_param(m, [&](const std::string& n, Param& p) {
        if (p.defined()) sd.push_back({n, p.value});
        flux = flux || starts_with(n, "single_transformer_blocks.");
        sd3 = sd3 || n == "pos_embed.pos_embed";
    });
    auto strip = [](std::string k) {
        for (const char* p : {"model.diffusion_model.", "diffusion_model."})
            if (starts_with(k, p)) k = k.substr(std::string(p).size());
        const size_t dot = k.rfind('.');
        return dot == std::string::npos ? k : k.substr(0, dot);
    };
    if (comp == "unet") {
        std::map<const void*, std::string> by_ptr;
        original_format::TensorMap in;
        for (auto& [n, t] : sd) {
            in[n] = t;
            by_ptr[t.raw()] = n;
        }
        try {
            for (const auto& [k, t] : original_format::unet_to_original(in)) {
                auto it = by_ptr.find(t.raw());
                if (it != by_ptr.end() && t.shape() == in[it->second].shape()) out[it->second] = strip(k);
            }
        } catch (const Error&) {
            // not a layout the SGM map knows (then only diffusers names match)
        }
    } else if (comp == "transformer" && flux) {
        for (auto& [n, t] : sd) {
            const std::string k = flux_bfl_key_of(n);
            if (!k.empty() && !starts_with(k, "final_layer.adaLN")) out[n] = strip(k);
        }
    } else if (comp == "transformer" && sd3) {
        for (auto& [n, t] : sd) {
            const std::string k = mmdit_original_name(n);
            if (k != n && k.find("adaLN_modulation") == std::string::npos) out[n] = strip(k);
        }
    }
    return out;
}

ComponentIndex build_index(const std::string& comp, Module& m) {
    ComponentIndex ix;
    ix.name = comp;
    const auto orig = original_names(comp, m);
    std::map<std::string, Slot> alias;
    std::map<std::string, Param*> biases;  // module name -> its bias
    for_each_param(m, [&](const std::string& n, Param& p) {
        if (p.shape.size() == 1 && n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0)
            biases[n.substr(0, n.size() - 5)] = &p;
    });
    for_each_param(m, [&](const std::string& n, Param& p) {
        // Linear / Conv2d weights, and the vector weights of norms (LyCORIS' w_norm, b_norm).
        const bool vec = p.shape.size() == 1 && !p.matrix;
        if ((!vec && (!p.matrix || p.shape.size() < 2)) || n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0)
            return;
        const std::string mod = n.substr(0, n.size() - 7);
        auto b = biases.find(mod);
        Param* bias = b != biases.end() && b->second->shape[0] == p.shape[0] ? b->second : nullptr;
        ix.slots[underscored(mod)] = {Target{&p, mod, 0, p.shape[0], bias}};
        if (!vec && ix.examples.size() < 200) ix.examples.push_back(mod);
        auto it = orig.find(n);
        if (it != orig.end() && it->second != mod) {
            Slot& s = alias[underscored(it->second)];
            const int64_t row0 = s.empty() ? 0 : s.back().row0 + s.back().rows;
            s.push_back(Target{&p, mod, row0, p.shape[0], bias});
        }
    });
    for (auto& [k, s] : alias) ix.slots.emplace(k, std::move(s));  // own names win
    return ix;
}

// "lora_unet_..." / "unet." ... -> (component, rest).
std::pair<std::string, std::string> split_component(const std::string& name, const std::string& denoiser) {
    static const std::pair<const char*, const char*> kPrefixes[] = {
        {"lora_unet_", ""},           {"lora_transformer_", ""},       {"lora_te1_", "text_encoder"},
        {"lora_te2_", "text_encoder_2"}, {"lora_te3_", "text_encoder_3"}, {"lora_te_", "text_encoder"},
        {"unet.", ""},                {"transformer.", ""},            {"text_encoder.", "text_encoder"},
        {"text_encoder_2.", "text_encoder_2"}, {"text_encoder_3.", "text_encoder_3"},
        {"model.diffusion_model.", ""}, {"diffusion_model.", ""},      {"base_model.model.", ""},
    };
    for (const auto& [p, c] : kPrefixes)
        if (starts_with(name, p)) return {*c ? c : denoiser, name.substr(std::string(p).size())};
    return {denoiser, name};
}

const Slot* find_slot(const ComponentIndex& ix, const std::string& rest) {
    const std::string key = underscored(rest);
    auto it = ix.slots.find(key);
    if (it != ix.slots.end()) return &it->second;
    // diffusers' old text-encoder LoRAs name CLIP's projections like attention processors (to_q_lora ...).
    static const std::pair<const char*, const char*> kClip[] = {
        {"_to_q", "_q_proj"}, {"_to_k", "_k_proj"}, {"_to_v", "_v_proj"}, {"_to_out_0", "_out_proj"}, {"_to_out", "_out_proj"}};
    for (const auto& [a, b] : kClip) {
        const std::string sa(a);
        if (key.size() > sa.size() && key.compare(key.size() - sa.size(), sa.size(), sa) == 0) {
            it = ix.slots.find(key.substr(0, key.size() - sa.size()) + b);
            if (it != ix.slots.end()) return &it->second;
        }
    }
    return nullptr;
}

// w + factor * delta as a new tensor of w's dtype and shape: each chunk widened to F32, summed, rounded back once.
Tensor merged(const Tensor& w_in, const float* delta, float factor) {
    const Tensor w = w_in.contiguous();
    const DType dt = w.dtype();
    NUANCE_ASSERT(dt == DType::F32 || dt == DType::F16 || dt == DType::BF16, "merge of ", dtype_name(dt));
    Tensor out = Tensor::empty(w.shape(), dt);
    const int64_t n = w.numel();
    constexpr int64_t kChunk = 1 << 14;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    const bool f32 = dt == DType::F32, f16 = dt == DType::F16;
    const float* wf = f32 ? w.data<float>() : nullptr;
    const uint16_t* wh = f32 ? nullptr : w.data<uint16_t>();
    float* of = f32 ? out.data<float>() : nullptr;
    uint16_t* oh = f32 ? nullptr : out.data<uint16_t>();
#pragma omp parallel for schedule(static) if (n > (1 << 18))
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t b = c * kChunk, len = std::min(kChunk, n - b);
        float buf[kChunk];
        if (f32) {
            std::memcpy(buf, wf + b, (size_t)len * 4);
        } else if (f16) {
            for (int64_t i = 0; i < len; ++i) buf[i] = f16_to_f32(wh[b + i]);
        } else {
            for (int64_t i = 0; i < len; ++i) buf[i] = bf16_to_f32(wh[b + i]);
        }
        for (int64_t i = 0; i < len; ++i) buf[i] += delta[b + i] * factor;
        if (f32) {
            std::memcpy(of + b, buf, (size_t)len * 4);
        } else if (f16) {
            for (int64_t i = 0; i < len; ++i) oh[b + i] = f32_to_f16(buf[i]);
        } else {
            for (int64_t i = 0; i < len; ++i) oh[b + i] = f32_to_bf16(buf[i]);
        }
    }
    return out;
}

// A quantized layer's current values: its blocks dequantized plus the run-time patches of adapters applied before
// (as the products see them), F32 [rows, cols].
Tensor quantized_values(const Tensor& t) {
    const auto v = quantized_weight_view(t);
    const int64_t rows = v->rows, cols = t.numel() / std::max<int64_t>(1, rows);
    Tensor w = dequantize_weight(t).f32().contiguous().reshape({rows, cols}).clone();
    float* pw = w.data<float>();
    for (const QuantizedWeightPatch& p : *v->patches) {
        const int64_t lo = std::max(v->first_row, p.row0), hi = std::min(v->first_row + rows, p.row0 + p.rows());
        if (lo >= hi) continue;
        const Tensor d = (p.b.defined() ? matmul(p.b.narrow(0, lo - p.row0, hi - lo).contiguous(), p.a)
                                        : p.a.narrow(0, lo - p.row0, hi - lo))
                             .contiguous();
        const float* pd = d.data<float>();
        float* dst = pw + (lo - v->first_row) * cols;
        for (int64_t i = 0; i < (hi - lo) * cols; ++i) dst[i] += p.scale * pd[i];
    }
    return w;
}

// The slot's current weight as F32 [shape] (its layers' rows stacked; quantized layers: quantized_values).
Tensor slot_weight(const Slot& slot, const Shape& shape) {
    const int64_t out = shape[0], cols = shape_numel(shape) / std::max<int64_t>(1, out);
    Tensor w = Tensor::empty(shape);
    float* pw = w.data<float>();
    for (const Target& t : slot) {
        const Tensor v = (quantized_weight_view(t.p->value) ? quantized_values(t.p->value) : t.p->value).f32().contiguous();
        NUANCE_ASSERT(v.numel() == t.rows * cols, "slot weight of ", t.name);
        std::memcpy(pw + t.row0 * cols, v.data<float>(), (size_t)(t.rows * cols) * 4);
    }
    return w;
}

// DoRA as ComfyUI's weight_decompose merges it: W_s = W + scale * delta; W' = m * W_s / (||W_s|| + eps); the
// returned delta is strength * (W' - W) (F32, the slot's full shape; W is the layers' current value, rows stacked).
// The norm runs per output row (over in, kh, kw) or per input channel (over out, kh, kw).
Tensor dora_delta(const LoraModule& m, const Slot& slot, const Tensor& delta, const Shape& shape, float scale,
                  float strength) {
    const int64_t out = shape[0], cols = delta.numel() / std::max<int64_t>(1, out);
    const int64_t in = shape.size() >= 2 ? shape[1] : cols, K = cols / std::max<int64_t>(1, in);
    Tensor w = Tensor::empty({out, cols});
    float* pw = w.data<float>();
    for (const Target& t : slot) {
        const Tensor v = t.p->value.f32().contiguous();
        std::memcpy(pw + t.row0 * cols, v.data<float>(), (size_t)(t.rows * cols) * 4);
    }
    const float* d = delta.data<float>();
    std::vector<float> ws((size_t)(out * cols));
    for (int64_t i = 0; i < out * cols; ++i) ws[(size_t)i] = pw[i] + scale * d[i];
    const Tensor mag_t = m.dora_scale.f32().contiguous();
    const float* mag = mag_t.data<float>();
    const bool on_out = m.dora_peft || m.dora_scale.size(0) == out;
    std::vector<double> norm((size_t)(on_out ? out : in), 0.0);
    for (int64_t o = 0; o < out; ++o)
        for (int64_t c = 0; c < cols; ++c) {
            const double x = ws[(size_t)(o * cols + c)];
            norm[(size_t)(on_out ? o : c / K)] += x * x;
        }
    constexpr float kEps = 1.1920929e-7f;  // torch.finfo(float32).eps, as ComfyUI and LyCORIS add it
    Tensor res = Tensor::empty(shape);
    float* r = res.data<float>();
    for (int64_t o = 0; o < out; ++o)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t g = (size_t)(on_out ? o : c / K);
            const float f = mag[g] / ((float)std::sqrt(norm[g]) + kEps);
            const size_t i = (size_t)(o * cols + c);
            r[i] = strength * (ws[i] * f - pw[i]);
        }
    return res;
}

std::string join_examples(const std::vector<std::string>& v, size_t n) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < n; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > n) s += ", ...";
    return s;
}

// The index of every component a LoRA can adapt (the denoiser, the text encoders), and the denoiser's name.
struct ModelIndex {
    std::string denoiser = "unet";
    std::vector<ComponentIndex> components;
    const ComponentIndex* component(const std::string& name) const {  // nullptr: the model has no such component
        for (const auto& c : components)
            if (c.name == name) return &c;
        return nullptr;
    }
};
ModelIndex index_model(const LoraComponents& model) {
    ModelIndex ix;
    for (const auto& [name, m] : model) {
        if (!m) continue;
        if (name == "transformer") ix.denoiser = "transformer";
        if (name == "unet" || name == "transformer" || starts_with(name, "text_encoder"))
            ix.components.push_back(build_index(name, *m));
    }
    return ix;
}

}  // namespace

std::vector<LoraModuleTarget> lora_module_targets(const LoraComponents& model, const LoraFile& file) {
    const ModelIndex mi = index_model(model);
    std::vector<LoraModuleTarget> out;
    for (const auto& mod : file.modules) {
        auto [comp, rest] = split_component(mod.name, mi.denoiser);
        const ComponentIndex* ix = mi.component(comp);
        const Slot* slot = ix ? find_slot(*ix, rest) : nullptr;
        const bool whole = slot && slot->size() == 1 && slot->front().row0 == 0 && slot->front().p->defined() &&
                           slot->front().rows == slot->front().p->shape[0];
        out.push_back({&mod, whole ? slot->front().p : nullptr, comp});
    }
    return out;
}

LoraApplyReport LoraMerge::apply(const LoraComponents& model, const LoraFile& file, float strength,
                                 std::optional<float> te_strength) {
    LoraApplyReport rep;
    rep.file = file.path;
    rep.modules = (int64_t)file.modules.size();
    const ModelIndex mi = index_model(model);
    const std::string& denoiser = mi.denoiser;
    auto component = [&](const std::string& c) { return mi.component(c); };

    // Phase 1: resolve every module and check its shape (nothing is changed if this throws).
    struct Job {
        const LoraModule* m;
        const Slot* slot;
        bool te;
        Shape shape;  // the full delta's shape
    };
    std::vector<Job> jobs;
    std::set<std::string> missing_components;
    for (const auto& mod : file.modules) {
        auto [comp, rest] = split_component(mod.name, denoiser);
        const ComponentIndex* ix = component(comp);
        const Slot* slot = ix ? find_slot(*ix, rest) : nullptr;
        if (!slot && comp == denoiser && !ix) slot = nullptr;
        if (!slot) {
            if (!ix) missing_components.insert(comp);
            rep.unmatched.push_back(mod.name);
            continue;
        }
        const Param& first = *slot->front().p;
        NUANCE_CHECK(first.defined(), "LoRA '", file.path, "': layer '", slot->front().name, "' of the ", comp,
                     " is not loaded");
        Shape shape = first.value.shape();
        int64_t rows = 0;
        for (const Target& t : *slot) {
            NUANCE_CHECK(t.p->defined(), "LoRA '", file.path, "': layer '", t.name, "' of the ", comp, " is not loaded");
            NUANCE_CHECK_CODE(dtype_is_float(t.p->value.dtype()) || quantized_weight_view(t.p->value).has_value(),
                              Unsupported, "LoRA '", file.path, "': layer '", t.name, "' is stored as ",
                              dtype_name(t.p->value.dtype()), "; a LoRA needs float or quantized weights");
            NUANCE_CHECK(t.p->value.dim() == (int64_t)shape.size() &&
                             std::equal(shape.begin() + 1, shape.end(), t.p->value.shape().begin() + 1),
                         "LoRA '", file.path, "': module ", mod.name, " spans layers of different widths (",
                         shape, " and ", t.p->value.shape(), ")");
            rows += t.rows;
        }
        shape[0] = rows;
        jobs.push_back({&mod, slot, starts_with(comp, "text_encoder"), shape});
    }
    rep.matched = (int64_t)jobs.size();

    if (jobs.empty()) {
        std::string hint;
        if (missing_components.count("text_encoder_2") || missing_components.count("text_encoder_3"))
            hint = " (it has modules for a second/third text encoder: a LoRA for SDXL / SD3 on a model without one?)";
        std::vector<std::string> own;
        for (const auto& ix : mi.components)
            for (size_t i = 0; i < ix.examples.size() && i < 3; ++i) own.push_back(ix.name + "." + ix.examples[i]);
        fail(ErrorCode::InvalidArgument, "LoRA '", file.path, "': none of its ", rep.modules,
             " modules match a layer of the model", hint, "; unmatched e.g. ", join_examples(rep.unmatched, 4),
             "; the model's layers are e.g. ", join_examples(own, 6));
    }
    if (missing_components.count("text_encoder_2") && !component("text_encoder_2"))
        fail(ErrorCode::InvalidArgument, "LoRA '", file.path, "' has modules for a second text encoder (",
             join_examples(rep.unmatched, 2), ") but the model has only one: a LoRA for SDXL on an SD1.x/SD2.x model?");
    // Shapes: the LoRA's factors must make each layer's shape (checked before any product is computed).
    for (const Job& j : jobs) {
        const LoraModule& m = *j.m;
        auto [comp, rest] = split_component(m.name, denoiser);
        (void)rest;
        const Shape& s = j.shape;
        int64_t out = s[0], cols = shape_numel(s) / std::max<int64_t>(1, s[0]);
        int64_t mo = -1, mc = -1;
        if (m.kind == LoraKind::LoRA) { mo = m.t.at("up").size(0); mc = m.t.at("down").numel() / m.t.at("down").size(0); }
        if (m.kind == LoraKind::LoRA && m.t.count("mid")) {
            const Tensor& mid = m.t.at("mid");
            mc *= mid.size(2) * mid.size(3);
        }
        if (m.kind == LoraKind::LoHa && !m.t.count("t1")) { mo = m.t.at("w1_a").size(0); mc = m.t.at("w1_b").numel() / m.t.at("w1_b").size(0); }
        if (m.kind == LoraKind::LoHa && m.t.count("t1")) {
            const Tensor& t1 = m.t.at("t1");
            mo = m.t.at("w1_a").size(1);
            mc = m.t.at("w1_b").size(1) * t1.size(2) * t1.size(3);
        }
        if (mo >= 0 && (mo != out || mc != cols))
            fail(ErrorCode::InvalidArgument, "LoRA '", file.path, "': module ", m.name, " makes a [", mo, ", ", mc,
                 "] delta but the ", comp, "'s layer '", j.slot->front().name, "' is ", s,
                 " (a LoRA for another model size or family?)");
        m.check_target(s, file.path);  // every kind's factors against the layer (the lines above: the same message
                                       // as before for LoRA and LoHa, with the layer's name)
        if (const Tensor* bd = m.bias_delta()) {
            bool all = true;
            for (const Target& t : *j.slot) all = all && t.bias && t.bias->defined();
            if (bd->numel() != s[0])
                fail(ErrorCode::InvalidArgument, "LoRA '", file.path, "': module ", m.name, ": bias delta ",
                     bd->shape(), " does not fit the ", comp, "'s layer '", j.slot->front().name, "' ", s);
            if (!all)
                rep.warnings.push_back(str("LoRA '", file.path, "': module ", m.name, " has a bias delta but the ", comp,
                                           "'s layer '", j.slot->front().name, "' has no bias: the bias delta is ignored"));
            for (const Target& t : *j.slot)
                if (t.bias && t.bias->defined())
                    NUANCE_CHECK(dtype_is_float(t.bias->value.dtype()), "LoRA '", file.path, "': the bias of '", t.name,
                                 "' is stored as ", dtype_name(t.bias->value.dtype()));
        }
        if (m.dora_scale.defined()) {  // DoRA: a magnitude per output row or per input channel (see lora.h)
            const Tensor& ds = m.dora_scale;
            const bool on_out = m.dora_peft || ds.size(0) == s[0];
            const int64_t want = on_out ? s[0] : (s.size() >= 2 ? s[1] : -1);
            if (ds.numel() != want || (!m.dora_peft && !on_out && ds.size(0) != 1))
                fail(ErrorCode::InvalidArgument, "LoRA '", file.path, "': module ", m.name, ": DoRA magnitude ",
                     ds.shape(), " does not fit the ", comp, "'s layer '", j.slot->front().name, "' ", s,
                     " (expected ", on_out ? "one value per output row" : "[1, in] / [1, in, 1, 1]", ")");
        }
    }
    if (rep.unmatched.size() * 2 > file.modules.size())
        rep.warnings.push_back(str("LoRA '", file.path, "': ", rep.unmatched.size(), " of its ", rep.modules,
                                   " modules match no layer of the model (e.g. ", join_examples(rep.unmatched, 4), ")"));

    // Phase 2: compute and merge.
    const float te_s = te_strength.value_or(strength);
    for (float s : {strength, te_s})
        NUANCE_CHECK(std::isfinite(s), "LoRA '", file.path, "': strength ", s, " is not a finite number");
    std::set<const Param*> saved;
    for (const auto& [p, t] : saved_) saved.insert(p);
    // A module that fails here (values that make no delta: an OFT block whose I - Q is not invertible, ...) must
    // leave the model as this call found it: every tensor it replaces is kept until the loop ends.
    const size_t saved_before = saved_.size();
    std::vector<std::pair<Param*, Tensor>> this_call;
    std::set<const Param*> touched;
    auto touch = [&](Param& p) {
        if (!saved.count(&p)) {
            saved_.push_back({&p, p.value});
            saved.insert(&p);
        }
        if (touched.insert(&p).second) this_call.push_back({&p, p.value});
    };
    try {
        for (const Job& j : jobs) {
            const LoraModule& m = *j.m;
            const float st = j.te ? te_s : strength;
            if (st == 0.0f) continue;
            float factor = m.strength_inside() ? 1.0f : (float)(m.scale() * (double)st);
            const int64_t cols = shape_numel(j.shape) / std::max<int64_t>(1, j.shape[0]);
            // Quantized weights are never rewritten: the LoRA runs beside them (y += factor * up · (down · x)), as
            // stable-diffusion.cpp applies LoRAs to quantized models. Low-rank factors stay low rank; LoHa / LoKr /
            // full diffs add their dense delta rows (f32, the size of the layer).
            bool any_quantized = false, any_float = false;
            for (const Target& t : *j.slot) (quantized_weight_view(t.p->value) ? any_quantized : any_float) = true;
            NUANCE_CHECK(!(any_quantized && m.dora_scale.defined()), "LoRA '", file.path, "': module '", m.name,
                         "' is DoRA (dora_scale), which needs the merged weight's norm: it cannot run beside a "
                         "quantized (GGUF) weight; use a float checkpoint for DoRA files");
            Tensor delta, weight;
            if (m.uses_weight()) weight = slot_weight(*j.slot, j.shape);
            const bool weight_delta = m.kind != LoraKind::Full || m.t.count("diff");
            if (weight_delta && (any_float || m.kind != LoraKind::LoRA)) delta = m.delta(j.shape, file.path, weight, st);
            if (m.dora_scale.defined()) {
                delta = dora_delta(m, *j.slot, delta, j.shape, (float)m.scale(), st);
                factor = 1.0f;
            }
            Tensor down, up;
            if (any_quantized && m.kind == LoraKind::LoRA) {
                const Tensor& dn = m.t.at("down");
                down = dn.f32().contiguous().view({dn.size(0), cols}).clone();
                const Tensor& u = m.t.at("up");
                up = u.f32().contiguous().view({u.size(0), dn.size(0)});
            }
            if (const Tensor* bd = m.bias_delta()) {  // diff_b / b_norm: the bias moves by strength
                const Tensor b = bd->f32().contiguous();
                for (const Target& t : *j.slot) {
                    if (!t.bias || !t.bias->defined()) continue;
                    Param& p = *t.bias;
                    touch(p);
                    // each target's own bias: rows row0.. of the delta (a fused qkv's into split to_q / to_k / to_v)
                    p.value = merged(p.value, b.data<float>() + t.row0, st);
                }
            }
            if (!weight_delta) continue;
            for (const Target& t : *j.slot) {
                Param& p = *t.p;
                touch(p);
                if (quantized_weight_view(p.value)) {
                    QuantizedWeightPatch patch;
                    patch.scale = factor;
                    if (down.defined()) {
                        patch.a = down;
                        patch.b = up.narrow(0, t.row0, t.rows).clone();
                    } else {
                        patch.a = delta.view({j.shape[0], cols}).narrow(0, t.row0, t.rows).clone();
                    }
                    p.value = quantized_weight_with_patch(p.value, std::move(patch));
                    continue;
                }
                // A new tensor (new storage): the packed-weight cache repacks it and keeps the original's packing valid.
                p.value = merged(p.value, delta.data<float>() + t.row0 * cols, factor);
            }
        }
    } catch (...) {
        for (auto it = this_call.rbegin(); it != this_call.rend(); ++it) it->first->value = it->second;
        saved_.resize(saved_before);
        throw;
    }
    return rep;
}

void LoraMerge::restore() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->first->value = it->second;
    saved_.clear();
}

}  // namespace nuance
