// Shape letters: B batch, L tokens, C/in channels, O/out channels, r rank, kh/kw kernel.
#include "train/lora_network.h"

#include "backends/backend.h"
#include "core/quantized_weight.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/mt19937.h"
#include "train/dataset.h"
#include "train/train_loop.h"

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

Param trainable(const Tensor& v) {
    Param p(v.shape(), true);
    p.value = v;
    return p;
}

}  // namespace

LoraAlgo parse_lora_algo(const std::string& s) {
    if (s == "lora" || s == "locon") return LoraAlgo::LoRA;
    if (s == "loha") return LoraAlgo::LoHa;
    if (s == "lokr") return LoraAlgo::LoKr;
    if (s == "ia3") return LoraAlgo::IA3;
    if (s == "oft" || s == "diag-oft") return LoraAlgo::OFT;
    if (s == "glora") return LoraAlgo::GLoRA;
    if (s == "boft") return LoraAlgo::BOFT;
    if (s == "full") return LoraAlgo::Full;
    fail(ErrorCode::InvalidArgument, "--network '", s,
         "': unknown (expected lora, loha, lokr, ia3, oft, glora, boft or full)");
}

const char* lora_algo_name(LoraAlgo a) {
    switch (a) {
        case LoraAlgo::LoRA: return "lora";
        case LoraAlgo::LoHa: return "loha";
        case LoraAlgo::LoKr: return "lokr";
        case LoraAlgo::IA3: return "ia3";
        case LoraAlgo::OFT: return "diag-oft";
        case LoraAlgo::GLoRA: return "glora";
        case LoraAlgo::BOFT: return "boft";
        case LoraAlgo::Full: return "full";
        case LoraAlgo::Norm: return "norm";
    }
    return "?";
}

std::pair<int64_t, int64_t> boft_factorization(int64_t dim, int64_t factor) {
    if (dim <= 0) return {0, 0};
    if (factor == -1 || factor > dim) factor = factor == -1 ? dim : factor;
    int64_t m = 0, n = 0;
    while (m <= factor) {  // LyCORIS' loop, step by step
        m += 2;
        while (dim % m != 0 && m < dim) m += 2;
        if (m > factor) break;
        const int64_t q = dim / m;
        if (q > 0 && (q & (q - 1)) == 0) n = q;
    }
    if (n == 0) return {0, 0};
    return {dim / n, n};
}

std::pair<int64_t, int64_t> lokr_factorization(int64_t dim, int64_t factor) {
    NUANCE_CHECK(dim >= 1, "LoKr: cannot factorize a dimension of ", dim);
    if (factor > 0 && dim % factor == 0) {
        int64_t m = factor, n = dim / factor;
        if (m > n) std::swap(m, n);
        return {m, n};
    }
    if (factor < 0) factor = dim;
    int64_t m = 1, n = dim;
    const int64_t length = m + n;
    while (m < n) {
        int64_t new_m = m + 1;
        while (dim % new_m != 0) ++new_m;
        const int64_t new_n = dim / new_m;
        if (new_m + new_n > length || new_m > factor) break;
        m = new_m;
        n = new_n;
    }
    if (m > n) std::swap(m, n);
    return {m, n};
}

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
        } else if (part == "ia3") {
            t.ia3 = true;
        } else {
            fail(ErrorCode::InvalidArgument, "--targets '", s, "': unknown part '", part,
                 "' (expected attn, ff, all-linear, conv, ia3 joined by '+', e.g. attn+ff or all-linear+conv)");
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
        // LyCORIS' ia3 preset: the keys and values of both attentions and the feed-forward output
        const bool ia3 = ((contains(m, ".attn1.") || contains(m, ".attn2.")) &&
                          (ends_with(m, ".to_k") || ends_with(m, ".to_v"))) || ends_with(m, ".ff.net.2");
        return (t.attn && attn) || (t.ff && ff) || (t.ia3 && ia3);
    }
    return t.conv && in_resnet_or_sampler(m);
}

bool lora_unet_norm_target(const std::string& m, const LoraTargets& t) {
    const size_t dot = m.rfind('.');
    const std::string last = dot == std::string::npos ? m : m.substr(dot + 1);
    if (last != "norm" && last != "norm1" && last != "norm2" && last != "norm3") return false;
    if (in_attention_block(m)) return t.attn || t.ff || t.all_linear || t.ia3;
    return t.conv && contains(m, "resnets.");
}

bool lora_te_target(const std::string& m, bool ia3_preset) {
    if (ia3_preset)  // LyCORIS' ia3 preset on the text encoder
        return (contains(m, ".self_attn.") && (ends_with(m, "k_proj") || ends_with(m, "v_proj"))) ||
               ends_with(m, ".mlp.fc2");
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
    NUANCE_CHECK(cfg.factor == -1 || (cfg.factor >= 1 && cfg.factor <= (int64_t)1 << 20), "LoRA: --factor must be -1 ",
                 "or in 1..", (int64_t)1 << 20, ", got ", cfg.factor);
    NUANCE_CHECK(cfg.algo == LoraAlgo::LoKr || (cfg.factor == -1 && !cfg.decompose_both), "LoRA: --factor and ",
                 "--decompose-both are LoKr's (--network lokr), not ", lora_algo_name(cfg.algo), "'s");
    NUANCE_CHECK((cfg.conv_rank == 0 && cfg.conv_alpha == 0) || cfg.targets.conv, "LoRA: --conv-rank / --conv-alpha ",
                 "size the adapters of 3x3 convolutions, which --targets '", cfg.targets.text, "' does not select ",
                 "(add +conv)");
    NUANCE_CHECK(cfg.algo != LoraAlgo::Norm, "LoRA: norm adapters come with --train-norm, not as a --network");
    const bool oft = cfg.algo == LoraAlgo::OFT || cfg.algo == LoraAlgo::BOFT;
    NUANCE_CHECK(oft || (cfg.oft_constraint == 0 && !cfg.oft_rescaled), "LoRA: --constraint and --rescaled are OFT's ",
                 "and BOFT's (--network oft | boft), not ", lora_algo_name(cfg.algo), "'s");
    NUANCE_CHECK(std::isfinite(cfg.oft_constraint) && cfg.oft_constraint >= 0 && cfg.oft_constraint <= 1e6,
                 "LoRA: --constraint must be a finite number in [0, 1e6], got ", cfg.oft_constraint);
    const bool lyco_vec = cfg.algo == LoraAlgo::IA3 || cfg.algo == LoraAlgo::OFT || cfg.algo == LoraAlgo::GLoRA ||
                          cfg.algo == LoraAlgo::BOFT || cfg.algo == LoraAlgo::Full;
    NUANCE_CHECK(!lyco_vec || (!cfg.dora && !cfg.tucker && cfg.rank_dropout == 0 && cfg.dropout == 0), "LoRA: --network ",
                 lora_algo_name(cfg.algo), " takes no --dora, --tucker, --rank-dropout or --network-dropout (LyCORIS ",
                 "has none for it)");
    add_component(unet, false, "lora_unet_", seed);
    NUANCE_CHECK(!adapters_.empty(), "LoRA: --targets '", cfg.targets.text, "' selects no layer of the UNet");
    if (te) {
        const size_t before = adapters_.size();
        add_component(*te, true, "lora_te_", seed ^ 0x7e7e7e7eull);
        NUANCE_CHECK(adapters_.size() > before, "LoRA: the text encoder has no self_attn / mlp layers to adapt");
    }
    if (cfg.train_norm) {
        const size_t before = adapters_.size();
        add_norms(unet, "lora_unet_");
        NUANCE_CHECK(adapters_.size() > before, "LoRA: --train-norm: --targets '", cfg.targets.text, "' reaches no ",
                     "norm of the UNet (the attention blocks' norms come with attn, ff or all-linear, the resnets' ",
                     "with conv)");
    }
}

void LoraNetwork::add_norms(Module& m, const std::string& prefix) {
    std::map<std::string, Param*> params;
    for_each_param(m, [&](const std::string& name, Param& p) {
        if (p.value.defined()) params[name] = &p;
    });
    for (const auto& [name, p] : params) {
        if (!ends_with(name, ".weight") || p->value.dim() != 1) continue;
        const std::string mod = name.substr(0, name.size() - 7);
        if (!lora_unet_norm_target(mod, cfg_.targets)) continue;
        auto a = std::make_unique<Adapter>();
        a->name = prefix + underscored(mod);
        a->module = mod;
        a->base = p;
        a->algo = LoraAlgo::Norm;
        a->rank = 1;
        a->alpha = 1;  // scale 1: LyCORIS' NormModule has no alpha
        const int64_t c = p->value.size(0);
        a->w_norm = trainable(Tensor::zeros({c}, DType::F32));
        auto b = params.find(mod + ".bias");
        if (b != params.end() && b->second->value.dim() == 1 && b->second->value.size(0) == c) {
            a->base_bias = b->second;
            a->b_norm = trainable(Tensor::zeros({c}, DType::F32));
        }
        a->index = (int64_t)adapters_.size();
        by_weight_[p] = a.get();
        adapters_.push_back(std::move(a));
    }
}

void LoraNetwork::add_component(Module& m, bool te, const std::string& prefix, uint64_t seed) {
    Mt19937 rng(seed);
    std::map<std::string, const Param*> biases;  // module name -> its bias (full trains its change)
    for_each_param(m, [&](const std::string& name, Param& p) {
        if (ends_with(name, ".bias") && p.value.defined() && p.value.dim() == 1)
            biases[name.substr(0, name.size() - 5)] = &p;
    });
    for_each_param(m, [&](const std::string& name, Param& p) {
        if (!ends_with(name, ".weight") || !p.value.defined()) return;
        const std::string mod = name.substr(0, name.size() - 7);
        const Shape& s = p.value.shape();
        if (s.size() != 2 && s.size() != 4) return;
        if (te ? !(s.size() == 2 && lora_te_target(mod, cfg_.targets.ia3 && !cfg_.targets.attn && !cfg_.targets.ff &&
                                                                   !cfg_.targets.all_linear))
               : !lora_unet_target(mod, s, cfg_.targets))
            return;
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
        a->algo = cfg_.algo;
        if (a->algo == LoraAlgo::IA3) {  // LyCORIS: zeros; the ia3 preset's feed-forward outputs scale their inputs
            a->on_input = ends_with(mod, ".ff.net.2") || ends_with(mod, ".mlp.fc2");
            const int64_t c = a->on_input ? s[1] : s[0];
            a->ia3 = trainable(Tensor::zeros(a->conv ? Shape{1, c, 1, 1} : Shape{c}, DType::F32));
            a->alpha = (double)a->rank;  // scale 1: IA3 has none
        } else if (a->algo == LoraAlgo::OFT) {  // LyCORIS' diag-oft: factorization(out, rank) -> (block size, blocks)
            const auto [b, n] = lokr_factorization(s[0], a->rank);
            a->oft_blocks = trainable(Tensor::zeros({n, b, b}, DType::F32));
            a->alpha = (double)a->rank;  // scale 1 (the file's alpha is OFT's constraint)
        } else if (a->algo == LoraAlgo::BOFT) {  // LyCORIS' ButterflyOFTModule
            const auto [b, n] = boft_factorization(s[0], a->rank);
            NUANCE_CHECK(b > 0, "LoRA: --network boft: layer '", mod, "' has ", s[0], " output rows, which no even ",
                         "block size up to ", a->rank, " splits into a power-of-two number of blocks (BOFT's butterfly, ",
                         "as LyCORIS' power2factorization); raise --rank", a->conv ? " / --conv-rank" : "",
                         " or choose other --targets");
            int64_t stages = 1;
            while (((int64_t)1 << (stages - 1)) < n) ++stages;  // log2(n) + 1
            a->oft_blocks = trainable(Tensor::zeros({stages, n, b, b}, DType::F32));
            a->alpha = (double)a->rank;  // scale 1 (the file's alpha is the constraint)
        } else if (a->algo == LoraAlgo::Full) {  // LyCORIS' FullModule: the weight's change itself, from zero
            a->diff = trainable(Tensor::zeros(s, DType::F32));
            auto b = biases.find(mod);
            if (b != biases.end() && b->second->value.size(0) == s[0]) {  // and the bias', as LyCORIS trains it
                a->base_bias = b->second;
                a->diff_b = trainable(Tensor::zeros({s[0]}, DType::F32));
            }
            a->alpha = (double)a->rank;  // scale 1: no alpha
        } else if (a->algo == LoraAlgo::GLoRA) {  // LyCORIS' GLoRAModule (no use_scalar): a1, b1 kaiming; a2, b2 zeros
            const int64_t r = a->rank, out = s[0], in = s[1];
            const bool c = a->conv;
            a->a1 = trainable(kaiming_uniform(c ? Shape{in, r, 1, 1} : Shape{in, r}, r, rng));
            a->b1 = trainable(kaiming_uniform(c ? Shape{out, r, 1, 1} : Shape{out, r}, r, rng));
            a->a2 = trainable(Tensor::zeros(c ? Shape{r, in, 1, 1} : Shape{r, in}, DType::F32));
            Shape b2s = s;
            b2s[0] = r;
            a->b2 = trainable(Tensor::zeros(b2s, DType::F32));
        } else if (a->algo == LoraAlgo::LoRA && cfg_.tucker && spatial) {  // LyCORIS' LoCon use_tucker
            const int64_t r = a->rank, out = s[0], in = s[1];
            const Shape ds{r, in, 1, 1}, ms{r, r, s[2], s[3]}, us{out, r, 1, 1};
            a->down = Param(ds, true);
            a->down.value = kaiming_uniform(ds, in, rng);
            a->mid = Param(ms, true);
            a->mid.value = kaiming_uniform(ms, r * s[2] * s[3], rng);
            a->up = Param(us, true);
            a->up.value = Tensor::zeros(us, DType::F32);
        } else if (a->algo == LoraAlgo::LoRA) {
            const int64_t r = a->rank, out = s[0];
            const int64_t fan_in = shape_numel(s) / out;  // in (* kh * kw)
            Shape ds = s, us = a->conv ? Shape{out, r, 1, 1} : Shape{out, r};
            ds[0] = r;
            a->down = Param(ds, true);
            a->down.value = kaiming_uniform(ds, fan_in, rng);
            a->up = Param(us, true);
            a->up.value = Tensor::zeros(us, DType::F32);
        } else {
            init_lycoris(*a, s, rng);
        }
        if (a->algo == LoraAlgo::OFT || a->algo == LoraAlgo::BOFT) {
            a->constraint = cfg_.oft_constraint;
            if (cfg_.oft_rescaled) {  // LyCORIS: ones, one per output row
                Shape rs(s.size(), 1);
                rs[0] = s[0];
                a->rescale = trainable(Tensor::full(rs, 1.0f));
            }
        }
        if (cfg_.dora) {  // m = ||W|| per output row (over the input channels and the kernel)
            NUANCE_CHECK(p.value.dtype() == DType::F32, "LoRA: --dora needs the base weights in f32 (the norm of the ",
                         "merged weight); '", mod, "' is ", p.value.str(), " (a quantized base cannot take DoRA)");
            const Tensor w = p.value.contiguous();
            const int64_t out = s[0], cols = shape_numel(s) / out;
            Tensor m = Tensor::empty(a->conv ? Shape{out, 1, 1, 1} : Shape{out, 1}, DType::F32);
            const float* pw = w.data<float>();
            for (int64_t o = 0; o < out; ++o) {
                double n = 0;
                for (int64_t c = 0; c < cols; ++c) n += (double)pw[o * cols + c] * pw[o * cols + c];
                m.data<float>()[o] = (float)std::sqrt(n);
            }
            a->magnitude = trainable(m);
        }
        a->index = (int64_t)adapters_.size();
        by_weight_[&p] = a.get();
        adapters_.push_back(std::move(a));
    });
}

// LyCORIS's LoHa / LoKr factors for a layer whose weight is `s` (see the header), initialised as LyCORIS does.
namespace {

// OFT's Q = B - B^T (the last two axes), scaled to Frobenius norm `limit` when its norm over every block + 1e-8
// exceeds it (LyCORIS' get_r: q * constraint / (||q|| + 1e-8); limit <= 0: none), on the tape (the norm too).
Var constrained_q(const Var& bl, double limit) {
    const int64_t d = bl.dim();
    const Var q = bl - bl.transpose(d - 2, d - 1);
    if (!(limit > 0)) return q;
    const Var norm = sqrt(sum(square(q).reshape({1, -1}), 1, true)) + 1e-8f;  // [1, 1], in f32 as torch.norm
    if (!(norm.value().contiguous().data<float>()[0] > (float)limit)) return q;
    Shape ones((size_t)d, 1);
    return q * (float)limit / norm.reshape(ones);
}

// LyCORIS' rebuild_tucker: W[o, i, k, l] = sum_{p, q} t[p, q, k, l] a[p, o] b[q, i] for t [r1, r2, kh, kw], a [r1, O],
// b [r2, I] -> [O, I, kh, kw] (on the tape).
Var rebuild_tucker(const Var& t, const Var& a, const Var& b) {
    const Shape& ts = t.shape();
    const int64_t r1 = ts[0], r2 = ts[1], kk = ts[2] * ts[3], O = a.shape()[1], I = b.shape()[1];
    const Var ta = matmul(a.transpose(0, 1), t.reshape({r1, r2 * kk}));  // [O, r2 * kk]
    const Var tb = matmul(ta.reshape({O, r2, kk}).permute({0, 2, 1}).reshape({O * kk, r2}), b);  // [O * kk, I]
    return tb.reshape({O, kk, I}).permute({0, 2, 1}).reshape({O, I, ts[2], ts[3]});
}

}  // namespace

void LoraNetwork::init_lycoris(Adapter& a, const Shape& s, Mt19937& rng) const {
    const int64_t r = a.rank, out = s[0], in = s[1];
    const int64_t K = a.conv ? s[2] * s[3] : 1, cols = in * K;
    const bool tucker = cfg_.tucker && a.conv && K > 1;
    if (a.algo == LoraAlgo::LoHa && tucker) {  // LyCORIS' use_tucker: [r, r, kh, kw] cores, [r, out] / [r, in] factors
        TorchCpuRng normal(rng());
        const Shape ts{r, r, s[2], s[3]};
        a.t1 = trainable(mul(normal.randn(ts), 0.1f));
        a.t2 = trainable(mul(normal.randn(ts), 0.1f));
        a.w1_a = trainable(mul(normal.randn({r, out}), 0.1f));
        a.w1_b = trainable(normal.randn({r, in}));
        a.w2_a = trainable(Tensor::zeros({r, out}, DType::F32));
        a.w2_b = trainable(normal.randn({r, in}));
        return;
    }
    if (a.algo == LoraAlgo::LoHa) {
        TorchCpuRng normal(rng());
        a.w1_a = trainable(mul(normal.randn({out, r}), 0.1f));
        a.w1_b = trainable(normal.randn({r, cols}));
        a.w2_a = trainable(Tensor::zeros({out, r}, DType::F32));
        a.w2_b = trainable(normal.randn({r, cols}));
        return;
    }
    const auto [out_l, out_k] = lokr_factorization(out, cfg_.factor);
    const auto [in_m, in_n] = lokr_factorization(in, cfg_.factor);
    const bool split_w1 = cfg_.decompose_both && (double)r < (double)std::max(out_l, in_m) / 2;
    const bool split_w2 = (double)r < (double)std::max(out_k, in_n) / 2;
    if (split_w2 && tucker) {  // LyCORIS' use_tucker: t2 [r, r, kh, kw], w2_a [r, b], w2_b [r, d]
        a.t2 = trainable(kaiming_uniform({r, r, s[2], s[3]}, r * K, rng));
        a.w2_a = trainable(kaiming_uniform({r, out_k}, out_k, rng));
        a.w2_b = trainable(Tensor::zeros({r, in_n}, DType::F32));
    } else if (split_w2) {  // LyCORIS initialises w2 before w1
        a.w2_a = trainable(kaiming_uniform({out_k, r}, r, rng));
        a.w2_b = trainable(Tensor::zeros({r, in_n * K}, DType::F32));
    } else {
        a.w2 = trainable(Tensor::zeros(a.conv ? Shape{out_k, in_n, s[2], s[3]} : Shape{out_k, in_n}, DType::F32));
    }
    if (split_w1) {
        a.w1_a = trainable(kaiming_uniform({out_l, r}, r, rng));
        a.w1_b = trainable(kaiming_uniform({r, in_m}, in_m, rng));
    } else {
        a.w1 = trainable(kaiming_uniform({out_l, in_m}, in_m, rng));
    }
    if (!split_w1 && !split_w2) a.alpha = (double)r;  // LyCORIS: neither factor decomposed, scale 1
}

std::vector<std::pair<std::string, const Param*>> LoraNetwork::Adapter::tensors() const {
    std::vector<std::pair<std::string, const Param*>> t;
    switch (algo) {
        case LoraAlgo::LoRA:
            t = {{"lora_down.weight", &down}, {"lora_up.weight", &up}};
            if (mid.defined()) t.emplace_back("lora_mid.weight", &mid);
            break;
        case LoraAlgo::LoHa:
            t = {{"hada_w1_a", &w1_a}, {"hada_w1_b", &w1_b}, {"hada_w2_a", &w2_a}, {"hada_w2_b", &w2_b}};
            if (t1.defined()) t.insert(t.end(), {{"hada_t1", &t1}, {"hada_t2", &t2}});
            break;
        case LoraAlgo::LoKr:
            if (w1.defined()) t.emplace_back("lokr_w1", &w1);
            else t.insert(t.end(), {{"lokr_w1_a", &w1_a}, {"lokr_w1_b", &w1_b}});
            if (w2.defined()) t.emplace_back("lokr_w2", &w2);
            else t.insert(t.end(), {{"lokr_w2_a", &w2_a}, {"lokr_w2_b", &w2_b}});
            if (t2.defined()) t.emplace_back("lokr_t2", &t2);
            break;
        case LoraAlgo::IA3: t = {{"weight", &ia3}}; break;
        case LoraAlgo::OFT:
        case LoraAlgo::BOFT:
            t = {{"oft_blocks", &oft_blocks}};
            if (rescale.defined()) t.emplace_back("rescale", &rescale);
            break;
        case LoraAlgo::GLoRA: t = {{"a1.weight", &a1}, {"a2.weight", &a2}, {"b1.weight", &b1}, {"b2.weight", &b2}}; break;
        case LoraAlgo::Full:
            t = {{"diff", &diff}};
            if (diff_b.defined()) t.emplace_back("diff_b", &diff_b);
            break;
        case LoraAlgo::Norm:
            t = {{"w_norm", &w_norm}};
            if (b_norm.defined()) t.emplace_back("b_norm", &b_norm);
            break;
    }
    if (magnitude.defined()) t.emplace_back("dora_scale", &magnitude);
    return t;
}

std::vector<std::pair<std::string, Param*>> LoraNetwork::Adapter::tensors() {
    std::vector<std::pair<std::string, Param*>> t;
    for (auto& [k, p] : static_cast<const Adapter*>(this)->tensors()) t.emplace_back(k, const_cast<Param*>(p));
    return t;
}

Var LoraNetwork::Adapter::weight_delta() const {
    const Shape& s = base->shape;
    const int64_t out = s[0], cols = shape_numel(s) / out;
    if (algo == LoraAlgo::Full) return param_var(diff);
    if (algo == LoraAlgo::Norm) return param_var(w_norm);  // (the weight's change; b_norm moves the bias)
    if (algo == LoraAlgo::IA3 || algo == LoraAlgo::OFT || algo == LoraAlgo::GLoRA || algo == LoraAlgo::BOFT) {
        // The frozen base weight as an f32 constant (a quantized or 16-bit base: its values).
        const Tensor& bv = base->value;
        const Var w(quantized_weight_view(bv) ? dequantize_weight(bv).reshape(s)
                                              : bv.dtype() == DType::F32 ? bv : bv.f32().contiguous());
        if (algo == LoraAlgo::IA3) {
            Shape vs(s.size(), 1);  // the scale along the output rows, or the input channels
            vs[on_input ? 1 : 0] = s[on_input ? 1 : 0];
            return w * param_var(ia3).reshape(vs);
        }
        if (algo == LoraAlgo::GLoRA) {  // W a1 a2 on the input axis (per output row and kernel position) + b1 b2
            const int64_t in = s[1], K = cols / in, r = rank;
            const Var A = matmul(param_var(a1).reshape({in, r}), param_var(a2).reshape({r, in}));  // [in, in]
            Var wa = K == 1 ? matmul(w.reshape({out, in}), A)
                            : matmul(w.reshape({out, in, K}).permute({0, 2, 1}).reshape({out * K, in}), A)
                                  .reshape({out, K, in})
                                  .permute({0, 2, 1});
            return wa.reshape(s) + matmul(param_var(b1).reshape({out, r}), param_var(b2).reshape({r, cols})).reshape(s);
        }
        if (algo == LoraAlgo::BOFT) {
            // LyCORIS' butterfly: stage i groups the rows as (c, g, k) with g < 2 and k < 2^i * b/2, takes them in
            // (c, k, g) order through the stage's n blocks (R x, not R^T x), and puts them back.
            const Var bl = param_var(oft_blocks);
            const int64_t m = bl.shape()[0], n = bl.shape()[1], b = bl.shape()[2];
            const Var r = cayley(constrained_q(bl, constraint * (double)out));  // [m, n, b, b]
            Var x = w.reshape({out, cols});
            for (int64_t i = 0; i < m; ++i) {
                const int64_t k = (b / 2) << i;
                const Var perm = x.reshape({out / (2 * k), 2, k, cols}).permute({0, 2, 1, 3}).reshape({n, b, cols});
                const Var mixed = matmul(r.select(0, i), perm);  // "b i j, b j ... -> b i ..."
                x = mixed.reshape({out / (2 * k), k, 2, cols}).permute({0, 2, 1, 3}).reshape({out, cols});
            }
            return (rescale.defined() ? x.reshape(s) * param_var(rescale) : x.reshape(s)) - w;
        }
        const Var bl = param_var(oft_blocks);
        const int64_t n = bl.shape()[0], b = bl.shape()[1];
        const Var r = cayley(constrained_q(bl, constraint * (double)out));  // [n, b, b]
        const Var turned = matmul(r.transpose(1, 2), w.reshape({n, b, cols}));  // einsum("k n m, k n ... -> k m ...")
        return (rescale.defined() ? turned.reshape(s) * param_var(rescale) : turned.reshape(s)) - w;
    }
    if (algo == LoraAlgo::LoRA && mid.defined())  // T(mid, up^T, down)
        return rebuild_tucker(param_var(mid), param_var(up).reshape({out, rank}).transpose(0, 1),
                              param_var(down).reshape({rank, s[1]}))
            .reshape(s);
    if (algo == LoraAlgo::LoRA)  // up [out, r (, 1, 1)] * down [r, in (, kh, kw)]
        return matmul(param_var(up).reshape({out, rank}), param_var(down).reshape({rank, cols})).reshape(s);
    if (algo == LoraAlgo::LoHa && t1.defined())
        return (rebuild_tucker(param_var(t1), param_var(w1_a), param_var(w1_b)) *
                rebuild_tucker(param_var(t2), param_var(w2_a), param_var(w2_b)))
            .reshape(s);
    if (algo == LoraAlgo::LoHa)
        return (matmul(param_var(w1_a), param_var(w1_b)) * matmul(param_var(w2_a), param_var(w2_b))).reshape(s);
    const Var f1 = w1.defined() ? param_var(w1) : matmul(param_var(w1_a), param_var(w1_b));  // [a, c]
    const Var f2 = w2.defined() ? param_var(w2)
                   : t2.defined() ? rebuild_tucker(param_var(t2), param_var(w2_a), param_var(w2_b))  // [b, d, kh, kw]
                                  : matmul(param_var(w2_a), param_var(w2_b));  // [b, d (* kh * kw)]
    const int64_t a = f1.shape()[0], c = f1.shape()[1], b = f2.shape()[0];
    const int64_t w2cols = shape_numel(f2.shape()) / b;
    NUANCE_CHECK(a * b == out && c * w2cols == cols, "LoKr: adapter ", name, ": kron([", a, ", ", c, "], [", b, ", ",
                 w2cols, "]) does not make the weight ", s);
    // kron: row i * b + k, column j * w2cols + l holds f1[i, j] * f2[k, l]
    return (f1.reshape({a, 1, c, 1}) * f2.reshape({1, b, 1, w2cols})).reshape(s);
}

int64_t LoraNetwork::numel() const {
    int64_t n = 0;
    for (const auto& a : adapters_)
        for (const auto& [k, p] : static_cast<const Adapter&>(*a).tensors()) n += p->value.numel();
    return n;
}

void LoraNetwork::register_params(ParamGrads& g) {
    for (auto& a : adapters_)
        for (auto& [k, p] : a->tensors()) g.add(a->name + "." + k, *p);
}

// ---- dropouts (training only)

namespace {

enum DropKind : uint64_t { kDropModule = 1, kDropRank = 2, kDropNeuron = 3 };

uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Draw i of the stream `key`: uniform on [0, 1) with 53 bits.
double uniform_of(uint64_t key, uint64_t i) { return (double)(splitmix64(key ^ i) >> 11) * 0x1.0p-53; }

}  // namespace

LoraNetwork::DropoutStep::DropoutStep(LoraNetwork& net, uint64_t seed, int64_t step, int64_t row0, int64_t batch)
    : net_(net) {
    NUANCE_CHECK(step >= 0 && row0 >= 0 && batch >= 1, "LoRA dropout: step ", step, ", rows from ", row0, ", batch ",
                 batch);
    net_.step_ = Step{true, seed, step, row0, batch};
}

LoraNetwork::DropoutStep::~DropoutStep() { net_.step_ = Step{}; }

uint64_t LoraNetwork::dropout_key(const Adapter& a, uint64_t kind) const {
    uint64_t k = splitmix64(step_.seed ^ 0x6c6f7261u);  // "lora"
    k = splitmix64(k ^ (uint64_t)step_.step);
    return splitmix64(k ^ ((uint64_t)a.index << 8 | kind));
}

double LoraNetwork::dropout_uniform(const Adapter& a, uint64_t kind, uint64_t i) const {
    return uniform_of(dropout_key(a, kind), i);
}

bool LoraNetwork::module_dropped(const Adapter& a) const {
    return step_.on && cfg_.module_dropout > 0 && dropout_uniform(a, kDropModule, 0) < cfg_.module_dropout;
}

Var LoraNetwork::dropped_delta(const Adapter& a) const {
    const Var d = a.weight_delta();
    if (!step_.on || cfg_.rank_dropout <= 0) return d;
    // LyCORIS: drop = rand(out) > rank_dropout over delta(W)'s rows, not rescaled (its rank_dropout_scale default)
    const Shape& s = a.base->shape;
    Shape ms(s.size(), 1);
    ms[0] = s[0];
    Tensor mask = Tensor::empty(ms, DType::F32);
    float* m = mask.data<float>();
    const uint64_t key = dropout_key(a, kDropRank);
    for (int64_t o = 0; o < s[0]; ++o) m[o] = uniform_of(key, (uint64_t)o) >= cfg_.rank_dropout ? 1.0f : 0.0f;
    return d * Var(mask);
}

Var LoraNetwork::lora_down_dropout(const Adapter& a, const Var& lx_in) const {
    if (!step_.on || (cfg_.dropout <= 0 && cfg_.rank_dropout <= 0)) return lx_in;
    Var lx = lx_in;
    const Shape& s = lx.shape();
    const int64_t B = step_.batch, n = shape_numel(s), r = a.rank;
    // Samples are the leading rows: [B, r, H, W] (conv), [B, T, r] or [B * T, r] / [B, r] (linear)
    NUANCE_CHECK(!s.empty() && n % B == 0 && s[0] % B == 0, "LoRA dropout: adapter ", a.name, "'s down output ", s,
                 " does not split into the step's ", B, " samples");
    const int64_t per = n / B;
    if (cfg_.dropout > 0) {  // kohya: F.dropout(lx, p): each value kept with 1 - p, scaled 1 / (1 - p)
        Tensor mask = Tensor::empty(s, DType::F32);
        float* m = mask.data<float>();
        const float kept = (float)(1.0 / (1.0 - cfg_.dropout));
        const uint64_t key = dropout_key(a, kDropNeuron);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < per; ++j)
                m[b * per + j] = uniform_of(key, (uint64_t)((step_.row0 + b) * per + j)) >= cfg_.dropout ? kept : 0.0f;
        lx = lx * Var(mask);
    }
    if (cfg_.rank_dropout > 0) {  // kohya: mask = rand(B, r) > rank_dropout, over every position of the sample
        const bool conv = s.size() == 4;
        NUANCE_CHECK(conv ? s[1] == r : s.back() == r, "LoRA dropout: adapter ", a.name, "'s down output ", s,
                     " has no rank axis of ", r);
        Tensor mask = Tensor::empty(s, DType::F32);
        float* m = mask.data<float>();
        const int64_t inner = conv ? s[2] * s[3] : 1;  // conv: [r, H, W] per sample; linear: [.., r]
        const uint64_t key = dropout_key(a, kDropRank);
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < per; ++j) {
                const int64_t ch = conv ? j / inner : j % r;
                m[b * per + j] = uniform_of(key, (uint64_t)((step_.row0 + b) * r + ch)) >= cfg_.rank_dropout ? 1.0f : 0.0f;
            }
        lx = lx * Var(mask);
    }
    return lx;
}

Var LoraNetwork::merged_weight(const Param& w) {
    auto it = by_weight_.find(&w);
    if (it == by_weight_.end()) return Var();
    const Adapter& a = *it->second;
    if (a.algo == LoraAlgo::LoRA && !a.magnitude.defined()) return Var();  // up(down(x)): cheaper than the weight
    if (module_dropped(a)) return Var();  // delta() adds nothing either: the base layer alone
    if (!w.value.defined() || w.value.dtype() != DType::F32) return Var();  // quantized / 16-bit: the bypass form
    const Var v = param_var(w) + dropped_delta(a) * (float)a.scale();
    if (!a.magnitude.defined()) return v;
    // DoRA: m * V / (||V|| + eps), the norm per output row over the input channels and the kernel
    Var sq = sum(square(v).reshape({v.shape()[0], -1}), 1, true);  // [out, 1]
    if (a.conv) sq = sq.reshape({v.shape()[0], 1, 1, 1});
    constexpr float kEps = 1.1920929e-7f;  // torch.finfo(float32).eps, as LyCORIS and ComfyUI add it
    // (+1e-30 inside the root: a zero column's gradient is 0, not 0 * inf; below f32 resolution of any other norm)
    return v * (param_var(a.magnitude) / (sqrt(sq + 1e-30f) + kEps));
}

Var LoraNetwork::adapted_bias(const Param& w) {
    auto it = by_weight_.find(&w);
    if (it == by_weight_.end()) return Var();
    const Adapter& a = *it->second;
    if (!a.diff_b.defined() || !a.base_bias || module_dropped(a)) return Var();
    return param_var(*a.base_bias) + param_var(a.diff_b);
}

Var LoraNetwork::norm_param(const Param& w, bool bias) {
    auto it = by_weight_.find(&w);
    if (it == by_weight_.end() || it->second->algo != LoraAlgo::Norm) return Var();
    const Adapter& a = *it->second;
    if (module_dropped(a)) return Var();
    if (!bias) return param_var(w) + param_var(a.w_norm);
    if (!a.b_norm.defined()) return Var();
    return param_var(*a.base_bias) + param_var(a.b_norm);
}

Var LoraNetwork::weight(const GroupNorm& layer) { return norm_param(layer.weight, false); }
Var LoraNetwork::bias(const GroupNorm& layer) { return norm_param(layer.weight, true); }
Var LoraNetwork::weight(const LayerNorm& layer) { return norm_param(layer.weight, false); }
Var LoraNetwork::bias(const LayerNorm& layer) { return norm_param(layer.weight, true); }

Var LoraNetwork::bias(const Linear& layer) { return adapted_bias(layer.weight); }
Var LoraNetwork::bias(const Conv2d& layer) { return adapted_bias(layer.weight); }

Var LoraNetwork::weight(const Linear& layer) { return merged_weight(layer.weight); }

Var LoraNetwork::weight(const Conv2d& layer) {
    if (layer.p.groups != 1) return Var();  // delta() names the problem
    return merged_weight(layer.weight);
}

Var LoraNetwork::delta(const Linear& layer, const Var& x) {
    auto it = by_weight_.find(&layer.weight);
    if (it == by_weight_.end()) return Var();
    Adapter& a = *it->second;
    if (module_dropped(a)) return Var();
    if (a.algo != LoraAlgo::LoRA) return linear(x, dropped_delta(a)) * (float)a.scale();
    // x [.., in] -> [.., r] -> [.., out]
    const Var lx = linear(x, param_var(a.down));
    const double keep = cfg_.rank_dropout > 0 && step_.on ? 1.0 / (1.0 - cfg_.rank_dropout) : 1.0;  // kohya's rescale
    return linear(lora_down_dropout(a, lx), param_var(a.up)) * (float)(a.scale() * keep);
}

Var LoraNetwork::delta(const Conv2d& layer, const Var& x) {
    auto it = by_weight_.find(&layer.weight);
    if (it == by_weight_.end()) return Var();
    Adapter& a = *it->second;
    NUANCE_CHECK(layer.p.groups == 1, "LoRA: layer '", a.module, "' is a grouped convolution (", layer.p.groups,
                 " groups), which LoCon does not adapt");
    if (module_dropped(a)) return Var();
    if (a.algo != LoraAlgo::LoRA) return conv2d(x, dropped_delta(a), Var(), layer.p) * (float)a.scale();
    // x [B, in, H, W] -> down (the layer's kernel, stride, padding) [B, r, H', W'] -> up (1x1) [B, out, H', W']
    // (Tucker: down 1x1, then the core with the layer's kernel, stride and padding; the dropouts on the core's output)
    const Var lx = a.mid.defined() ? conv2d(conv2d(x, param_var(a.down), Var(), Conv2dParams{}), param_var(a.mid), Var(),
                                            layer.p)
                                   : conv2d(x, param_var(a.down), Var(), layer.p);
    const double keep = cfg_.rank_dropout > 0 && step_.on ? 1.0 / (1.0 - cfg_.rank_dropout) : 1.0;
    return conv2d(lora_down_dropout(a, lx), param_var(a.up), Var(), Conv2dParams{}) * (float)(a.scale() * keep);
}

}  // namespace nuance
