// Trainable LoRA adapters on a model's Linear and Conv2d layers (Hu et al. 2021, "LoRA"; convolutions as kohya's
// LoCon): for an adapted layer W, forward(x) = W(x) + (alpha / rank) * up(down(x)), with the base weights frozen.
//   Linear  [out, in]:            down [rank, in], up [out, rank]
//   Conv2d  [out, in, kh, kw]:    down [rank, in, kh, kw] (the layer's stride / padding), up [out, rank, 1, 1]
// down starts as PEFT/kohya initialise lora_A (kaiming_uniform(a = sqrt(5)): U(+-1/sqrt(fan_in))), up as zeros, so
// an untrained network changes nothing.
//
// Which layers (--targets, '+'-separated parts; module names are diffusers' UNet2DConditionModel names):
//   attn        attn1 / attn2 to_q, to_k, to_v, to_out.0 of every transformer block (PEFT's usual SD targets)
//   ff          the transformer blocks' feed-forward ff.net.0.proj, ff.net.2
//   all-linear  every Linear and 1x1 Conv2d inside the attention blocks (Transformer2DModel: proj_in, proj_out,
//               attn1, attn2, ff): kohya's default LoRA
//   conv        every Linear / Conv2d of the ResnetBlock2D (conv1, conv2, time_emb_proj, conv_shortcut),
//               Downsample2D and Upsample2D layers: kohya's LoCon (conv_dim); all-linear+conv is exactly kohya's
//               LoRA-C3Lier module set
// Text encoder (train_text_encoder): kohya's set, every CLIPAttention q/k/v/out_proj and CLIPMLP fc1/fc2.
//
// Saved in kohya's format, which A1111, ComfyUI and nuance's loader (adapters/lora.h) read:
//   lora_unet_<module, '.' -> '_'>.lora_down.weight / .lora_up.weight / .alpha (0-d), lora_te_<module>... for the
//   text encoder (SD1.x/SD2.x names: kohya writes the UNet under its diffusers path there).
//
// LyCORIS algorithms (--network loha | lokr, as LyCORIS's lycoris.kohya network module with algo=loha | lokr, same
// module names, same alpha / rank scale, LyCORIS's shapes and initialisation; Tucker cores: LoraConfig::tucker):
//   LoHa (Hyeon-Woo et al. 2022): delta(W) = (w1_a w1_b) * (w2_a w2_b) (elementwise), each factor pair [out, r] x
//        [r, in (* kh * kw)]; w1_b, w2_b ~ N(0, 1), w1_a ~ N(0, 0.1^2), w2_a = 0. Keys hada_w1_a ... hada_w2_b.
//   LoKr (Yeh et al. 2023): delta(W) = kron(w1, w2), out = a * b, in = c * d split by LyCORIS's factorization
//        (--factor, -1: the two factors closest to each other); w1 [a, c] (decomposed into w1_a [a, r] w1_b [r, c]
//        with --decompose-both when r < max(a, c) / 2), w2 [b, d (, kh, kw)] decomposed into w2_a [b, r] w2_b
//        [r, d * kh * kw] when r < max(b, d) / 2, else kept whole; with neither factor decomposed the scale is 1
//        (alpha is written as the rank). w1 / w1_a / w1_b / w2_a kaiming-uniform, w2 / w2_b = 0. Keys lokr_w1 ...
//   IA3 (Liu et al. 2022, "(IA)^3"): delta(W) = W * w, one learned scale per output row ([out], conv [1, out, 1, 1]),
//        or per input channel for the feed-forward outputs ff.net.2 / mlp.fc2 (on_input, as LyCORIS' ia3 preset);
//        w = 0 at the start. Keys: weight, on_input; no alpha (scale 1). --targets ia3 is LyCORIS' preset (to_k,
//        to_v, ff.net.2; the text encoder's k_proj, v_proj, mlp.fc2).
//   OFT (Qiu et al. 2023, LyCORIS' diag-oft): the output rows in blocks of b (b, n = LyCORIS' factorization(out,
//        --rank): b <= rank), each block turned by the Cayley transform R = (I + Q)(I - Q)^-1 of Q = B - B^T,
//        W' = R^T W blockwise, delta(W) = W' - W; B = 0 at the start (R = I). Key oft_blocks [n, b, b]; alpha: the
//        norm constraint (LoraConfig::oft_constraint, 0: none), scale 1. With LoraConfig::oft_rescaled a trained
//        scale per output row (key rescale [out, 1 (, 1, 1)], ones at the start): W' = rescale * R^T W.
//   GLoRA (Chavan et al. 2023, as LyCORIS' GLoRAModule): delta(W) = W a1 a2 (on W's input axis, per output row and
//        kernel position) + b1 b2, scale alpha / rank; a1 [in, r] (conv [in, r, 1, 1]) and b1 [out, r (, 1, 1)]
//        kaiming-uniform, a2 [r, in (, 1, 1)] and b2 [r, in (, kh, kw)] zeros. Keys a1.weight ... b2.weight, alpha.
//   BOFT (Liu et al. 2024, "butterfly OFT", LyCORIS' ButterflyOFTModule): (b, n) = boft_factorization(out, --rank),
//        log2(n) + 1 butterfly stages of n orthogonal b x b blocks (each the Cayley transform of B - B^T); stage i
//        takes the rows in groups of 2 * 2^i * b/2, interleaved, through its blocks; delta(W) = the stages applied to
//        W, minus W. B = 0 at the start. Key oft_blocks [stages, n, b, b]; alpha, rescale as OFT's (the constraint
//        on the norm over every stage's blocks). A layer whose width has no such
//        split (160 rows at --rank 8: 10 x 16 needs --rank 10) is an error naming it, as in LyCORIS.
//   full (LyCORIS' FullModule, "native fine-tuning"): delta(W) = diff, the whole weight's change trained directly
//        ([out, in (, kh, kw)], zeros at the start), and the bias' change as LyCORIS does (diff_b [out], zeros, for
//        layers with a bias); keys diff, diff_b, no alpha (scale 1). Memory: the adapted layers' size, three times
//        over (value, AdamW's moments).
// DoRA (Liu et al. 2024, "weight-decomposed low-rank adaptation"; --dora, LyCORIS' dora_wd): LoRA, LoHa or LoKr
// algorithms plus a trained magnitude m per output row, W' = m * (W + scale * delta(W)) / (||W + scale * delta(W)|| +
// eps), the norm over each output row's inputs and kernel (LyCORIS 4's dora_scale [out, 1 (, 1, 1)], its default
// wd_on_out, and PEFT's lora_magnitude_vector axis; A1111, ComfyUI and nuance's loader tell the axis by the shape), m
// starting at ||W|| so that step 0 is the base model up to eps; gradients through the norm too (as LyCORIS; the paper
// detaches it). Needs f32 base weights.
//
// Training builds delta(W) from the factors on the tape and, as LyCORIS does by default, runs the layer once with
// W + scale * delta(W) (f32 base weights); quantized (or 16-bit) base weights take LyCORIS' bypass form instead, the
// layer's output plus scale * layer(x; delta(W)), so quantized bases work as for LoRA.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "adapters/lora.h"
#include "autograd/nn_layers.h"
#include "autograd/param_grads.h"
#include "core/mt19937.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace nuance {

struct LoraTargets {
    bool attn = false, ff = false, all_linear = false, conv = false, ia3 = false;
    std::string text;  // as given
};
// "attn", "attn+ff", "all-linear", "all-linear+conv", "attn+conv", "+conv" (= all-linear+conv) ... Errors name the
// unknown part and the allowed ones.
LoraTargets parse_lora_targets(const std::string& s);

// The adapter algorithm: LoRA (kohya's networks.lora, LoCon on convolutions), LyCORIS LoHa, LoKr, IA3, OFT, GLoRA or
// BOFT.
// Norm is not a --network: the adapters LoraConfig::train_norm adds beside the algorithm's (LyCORIS' norm modules).
enum class LoraAlgo { LoRA, LoHa, LoKr, IA3, OFT, GLoRA, BOFT, Full, Norm };
// "lora" (also "locon"), "loha", "lokr", "ia3", "oft" (also "diag-oft"), "glora", "boft", "full"; an error names the
// allowed ones.
LoraAlgo parse_lora_algo(const std::string& s);
const char* lora_algo_name(LoraAlgo a);  // "lora", "loha", "lokr", "ia3", "diag-oft", "glora", "boft", "full", "norm"

// LyCORIS' power2factorization(dim, factor) (BOFT's butterfly): the largest even block size b <= factor (-1: dim)
// that splits dim into a power-of-two number n of blocks, as (b, n); (0, 0) when none does.
std::pair<int64_t, int64_t> boft_factorization(int64_t dim, int64_t factor);

// LyCORIS's factorization(dimension, factor): (m, n) with m * n = dim, m <= n; factor > 0 dividing dim: (factor,
// dim / factor) ordered; otherwise the pair with the smallest m + n whose m does not pass factor (-1: no bound).
std::pair<int64_t, int64_t> lokr_factorization(int64_t dim, int64_t factor);

struct LoraConfig {
    LoraAlgo algo = LoraAlgo::LoRA;
    int64_t factor = -1;          // LoKr: LyCORIS's factor (-1, or 1..dim)
    bool decompose_both = false;  // LoKr: decompose w1 as well (LyCORIS's decompose_both)
    bool dora = false;            // DoRA's magnitude on top of the algorithm (LyCORIS' dora_wd)
    // Tucker cores on convolutions with a kernel above 1x1 (LyCORIS' use_tucker), rebuilt as LyCORIS' rebuild_tucker
    // T(t, a, b)[o, i, k, l] = sum_{p, q} t[p, q, k, l] a[p, o] b[q, i]:
    //   LoRA (LoCon): down [r, in, 1, 1] -> mid [r, r, kh, kw] (the layer's stride / padding) -> up [out, r, 1, 1]
    //         (lora_mid.weight), delta(W) = T(mid, up^T, down); init: down, mid kaiming-uniform, up zeros;
    //   LoHa: hada_t1 / hada_t2 [r, r, kh, kw], hada_w1_a / w2_a [r, out], hada_w1_b / w2_b [r, in],
    //         delta(W) = T(t1, w1_a, w1_b) * T(t2, w2_a, w2_b); init: t ~ N(0, 0.1^2), w_b ~ N(0, 1), w1_a ~
    //         N(0, 0.1^2), w2_a = 0;
    //   LoKr: when w2 is decomposed, lokr_t2 [r, r, kh, kw], lokr_w2_a [r, b], lokr_w2_b [r, d], w2 = T(t2, w2_a,
    //         w2_b); init: t2, w2_a kaiming-uniform, w2_b zeros.
    bool tucker = false;
    int64_t rank = 8;
    double alpha = 8;
    LoraTargets targets = parse_lora_targets("attn");
    // kohya's LoCon network_args conv_dim / conv_alpha: rank and alpha of the adapters on convolutions with a kernel
    // larger than 1x1 (the resnets' and samplers' 3x3s); 0: rank / alpha. The linears and 1x1 convs keep rank / alpha.
    int64_t conv_rank = 0;
    double conv_alpha = 0;
    // Dropouts while a training step is bound (LoraNetwork::DropoutStep), probabilities in [0, 1):
    //   module_dropout  (kohya, LyCORIS) an adapter is left out of the step with this probability;
    //   dropout         (kohya's network_dropout; plain LoRA only) dropout on down(x), kept values scaled 1 / (1 - p);
    //   rank_dropout    plain LoRA (kohya): each sample's rank channels of down(x) are dropped, the adapter's scale
    //                   times 1 / (1 - p); LoHa / LoKr / DoRA (LyCORIS, rank_dropout_scale off): rows (outputs) of
    //                   delta(W) are dropped, unscaled.
    // The draws come from a counter-based hash of (seed, step, adapter, global sample, element): the same on every
    // data-parallel rank for the same global batch, and on a resumed run.
    double dropout = 0, rank_dropout = 0, module_dropout = 0;
    // LyCORIS' train_norm (network_args "train_norm=True"): every GroupNorm / LayerNorm of the UNet blocks the targets
    // reach (lora_unet_norm_target) also trains its affine parameters' change, whatever the algorithm: w_norm [C]
    // and b_norm [C], zeros at the start, the norm computing with weight + w_norm and bias + b_norm (scale 1, no
    // alpha; module_dropout applies, the rank dropouts do not). Keys <module>.w_norm / .b_norm, as LyCORIS' NormModule.
    bool train_norm = false;
    // OFT / BOFT (LyCORIS' network_args constraint / rescaled): Q = B - B^T is scaled to the norm oft_constraint * out
    // (out: the layer's rows) whenever its Frobenius norm over all the layer's blocks, + 1e-8, exceeds that (0: no
    // constraint; LyCORIS' get_r); oft_rescaled adds the trained per-row rescale. Written as the module's alpha and
    // its rescale tensor, which LyCORIS, ComfyUI, A1111 and nuance's loader read.
    double oft_constraint = 0;
    bool oft_rescaled = false;
};
constexpr int64_t kMaxLoraRank = 1024;

class LoraNetwork : public LayerAdapters {
public:
    struct Adapter {
        std::string name;      // kohya module name, e.g. lora_unet_down_blocks_1_attentions_0_proj_in
        std::string module;    // the component's module name, e.g. down_blocks.1.attentions.0.proj_in
        bool text_encoder = false;
        const Param* base = nullptr;  // the adapted layer's weight
        bool conv = false;
        int64_t rank = 0;      // this adapter's rank and alpha (conv_rank / conv_alpha for kernels above 1x1)
        double alpha = 0;
        double scale() const { return alpha / (double)rank; }
        LoraAlgo algo = LoraAlgo::LoRA;
        Param down, up;        // LoRA: F32, trainable
        Param mid;             // LoRA with a Tucker core (LoraConfig::tucker, kernels above 1x1): lora_mid
        Param t1, t2;          // LoHa's (hada_t1 / hada_t2) and LoKr's (lokr_t2) Tucker cores, LoraConfig::tucker
        // LoHa: w1_a, w1_b, w2_a, w2_b (hada_*). LoKr: w1 or w1_a + w1_b, w2 or w2_a + w2_b (lokr_*). F32, trainable.
        Param w1, w1_a, w1_b, w2, w2_a, w2_b;
        Param magnitude;       // DoRA: m [out, 1] (linear) or [out, 1, 1, 1] (conv), saved as dora_scale
        Param ia3;             // IA3: the scale vector ([C] linear, [1, C, 1, 1] conv), saved as weight
        bool on_input = false; // IA3: the scale is on the input channels (ff.net.2, mlp.fc2)
        Param oft_blocks;      // OFT: [n, b, b]; BOFT: [stages, n, b, b]
        Param rescale;         // OFT / BOFT with oft_rescaled: [out, 1 (, 1, 1)]
        double constraint = 0; // OFT / BOFT: the norm constraint per output row (the file's alpha; 0: none)
        Param a1, a2, b1, b2;  // GLoRA
        Param diff;            // full: delta(W) itself
        Param diff_b;          // full: the bias' change ([out]; layers with a bias)
        Param w_norm, b_norm;  // Norm (train_norm): the norm's weight and bias changes ([C])
        const Param* base_bias = nullptr;  // the adapted layer's bias, when it has one
        int64_t index = 0;     // in adapters(): keys its dropout draws
        // (key after the module name, e.g. "lora_down.weight", "hada_w1_a", "lokr_w2", the parameter) of every
        // tensor this adapter trains, in the order the file lists them.
        std::vector<std::pair<std::string, Param*>> tensors();
        std::vector<std::pair<std::string, const Param*>> tensors() const;
        // delta(W) from the factors, the base weight's shape, before the scale (on the tape; LoRA: up * down).
        Var weight_delta() const;
    };

    // Adapters on `unet` (targets) and, when `te` is given, on the text encoder (kohya's set). Only layers the
    // models' for_each_param names are considered; a target set that selects no layer is an error naming it.
    // seed: of the down matrices' initialisation.
    LoraNetwork(Module& unet, Module* te, const LoraConfig& cfg, uint64_t seed);

    const LoraConfig& config() const { return cfg_; }
    double scale() const { return cfg_.alpha / (double)cfg_.rank; }  // of the linear and 1x1 adapters
    std::vector<std::unique_ptr<Adapter>>& adapters() { return adapters_; }
    const std::vector<std::unique_ptr<Adapter>>& adapters() const { return adapters_; }
    int64_t numel() const;

    // Adds every adapter tensor as "<kohya name>.<key>" (".lora_down.weight", ".hada_w1_a", ".lokr_w1"...; trainable).
    void register_params(ParamGrads& g);

    // The kohya / LyCORIS file's tensors: each adapter's alpha (0-d F32, its own) and its tensors (F32).
    std::vector<std::pair<std::string, Tensor>> kohya_tensors() const;
    // Writes them atomically to `path` with `metadata` (the ss_* fields), every tensor as `dtype` (kohya's
    // --save_precision: F32, F16 or BF16; it casts the alphas too).
    void save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata,
                    DType dtype = DType::F32) const;

    // kohya's --network_weights: the adapters start from a LoRA / LyCORIS file instead of their initialisation.
    // `targets` (adapters/lora.h: lora_module_targets over the adapted components) says which weight each of the
    // file's modules adapts, in any naming the loader reads (kohya diffusers-style or SGM names, PEFT ...). An adapter
    // on that weight takes the module's tensors (each of its trained tensors must be in the file, with its shape up
    // to trailing 1s) and the module's alpha (kohya loads it with the weights; a module without one has alpha = rank,
    // scale 1, as every loader reads it). Errors name the file, the module and what does not fit: another algorithm
    // than the run's (--network), a rank or a factor layout other than the run's, DoRA or an OFT rescale on one side
    // only, GLoRA's Tucker core; and a file none of whose modules has an adapter here. An OFT module's constraint (its
    // alpha) is the file's, as its other alphas.
    struct InitReport {
        int64_t adapters = 0;             // adapters set from the file
        int64_t fresh = 0;                // adapters the file has nothing for (they keep their initialisation)
        std::vector<std::string> unused;  // the file's modules on no adapter of this run (other layers, --targets)
    };
    InitReport init_from(const LoraFile& file, const std::vector<LoraModuleTarget>& targets);

    // The dropouts' step: while one lives, forwards through the network draw the config's dropouts for training step
    // `step` (seed: the run's), the local batch of `batch` samples starting at global sample `row0`. Without one (or
    // with every rate 0) the network is deterministic: what the saved file computes.
    class DropoutStep {
    public:
        DropoutStep(LoraNetwork& net, uint64_t seed, int64_t step, int64_t row0, int64_t batch);
        ~DropoutStep();
        DropoutStep(const DropoutStep&) = delete;
        DropoutStep& operator=(const DropoutStep&) = delete;

    private:
        LoraNetwork& net_;
    };
    // Whether adapter `a` is left out of the bound step (module_dropout); false when no step is bound.
    bool module_dropped(const Adapter& a) const;
    // The uniform [0, 1) draw number `i` of `kind` for adapter `a` in the bound step (exposed for the tests).
    double dropout_uniform(const Adapter& a, uint64_t kind, uint64_t i) const;
    uint64_t dropout_key(const Adapter& a, uint64_t kind) const;  // the stream dropout_uniform draws from

    // LayerAdapters: LoRA scale * up(down(x)), LoHa / LoKr scale * layer(x; delta(W)) for an adapted layer, else
    // undefined.
    Var delta(const Linear& layer, const Var& x) override;
    Var delta(const Conv2d& layer, const Var& x) override;
    // LoHa / LoKr on an f32 base weight: W + scale * delta(W); DoRA: m * that / its norm; else undefined (delta()
    // then adds the output).
    Var weight(const Linear& layer) override;
    Var weight(const Conv2d& layer) override;
    // full with a bias: the layer's bias + diff_b; else undefined.
    Var bias(const Linear& layer) override;
    Var bias(const Conv2d& layer) override;
    // train_norm: the norm's weight + w_norm, bias + b_norm; else undefined.
    Var weight(const GroupNorm& layer) override;
    Var bias(const GroupNorm& layer) override;
    Var weight(const LayerNorm& layer) override;
    Var bias(const LayerNorm& layer) override;

private:
    void add_component(Module& m, bool te, const std::string& prefix, uint64_t seed);
    void add_norms(Module& m, const std::string& prefix);
    Var norm_param(const Param& w, bool bias);
    void init_lycoris(Adapter& a, const Shape& s, Mt19937& rng) const;
    Var merged_weight(const Param& w);
    Var adapted_bias(const Param& w);
    Var dropped_delta(const Adapter& a) const;  // delta(W), its rows under the bound step's rank dropout
    Var lora_down_dropout(const Adapter& a, const Var& lx) const;  // kohya's dropouts on down(x); the extra scale
    LoraConfig cfg_;
    struct Step {
        bool on = false;
        uint64_t seed = 0;
        int64_t step = 0, row0 = 0, batch = 0;
    } step_;
    std::vector<std::unique_ptr<Adapter>> adapters_;
    std::unordered_map<const Param*, Adapter*> by_weight_;
};

// Whether kohya's LoRA puts an adapter on the UNet module `module` (a weight of `dims` dimensions whose trailing
// kernel is kh x kw) for `t`; exposed for the tests.
bool lora_unet_target(const std::string& module, const Shape& weight_shape, const LoraTargets& t);
// kohya's text encoder set: self_attn q/k/v/out_proj and mlp fc1/fc2; with ia3_preset (--targets ia3 alone),
// LyCORIS' ia3 preset: k_proj, v_proj, mlp.fc2.
bool lora_te_target(const std::string& module, bool ia3_preset = false);
// Whether train_norm trains the UNet norm `module` (its weight 1-D): the GroupNorm / LayerNorms (norm, norm1 ..
// norm3) of the attention blocks (Transformer2DModel) when the targets reach them (attn, ff, all-linear, ia3), of the
// ResnetBlock2Ds with conv: LyCORIS' NormModule on the norms inside its target blocks. (conv_norm_out and the text
// encoder's layer norms are outside every target block, in LyCORIS too.)
bool lora_unet_norm_target(const std::string& module, const LoraTargets& t);

}  // namespace nuance
