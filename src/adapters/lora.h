// LoRA-family adapters (LoRA / LoCon, LyCORIS LoHa, LoKr, IA3, OFT, BOFT, GLoRA, full and norm diffs) read from the files people download, and merged into a
// loaded model's weights: W' = W + strength * scale * delta(W), with the original tensors kept so that the merge can
// be undone bit-exactly (the server applies a request's LoRAs and restores the model afterwards).
//
// Formats (src/adapters/lora_file.cpp parses them, one "module" per adapted layer):
//   kohya / A1111:   lora_unet_<path '.'->'_'>.{lora_down,lora_up}.weight (+ .alpha), lora_te_ / lora_te1_ /
//                    lora_te2_ / lora_te3_ text encoders; LoCon convs (down [r,in,kh,kw], up [out,r,1,1]);
//                    SDXL files name the UNet by the original (SGM) layout (input_blocks_4_1_...), Flux files by
//                    BFL's (double_blocks_0_img_attn_qkv, single_blocks_3_linear1)
//   diffusers/PEFT:  <component>.<module>.lora_A.weight / lora_B.weight (also .lora_A.default.weight), older
//                    <module>.lora.down/up.weight, .lora_linear_layer.down/up.weight and attention processors'
//                    <attn>.processor.to_q_lora.down/up.weight; components unet., text_encoder., text_encoder_2.,
//                    transformer. (none: the denoiser)
//   LyCORIS LoHa:    hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b (+ alpha); Tucker/CP: + hada_t1, hada_t2
//   LyCORIS LoKr:    lokr_w1 | lokr_w1_a + lokr_w1_b, lokr_w2 | lokr_w2_a + lokr_w2_b (+ alpha); Tucker: + lokr_t2
//   Tucker LoCon:    lora_down [r, in, 1, 1] + lora_mid [r, r, kh, kw] + lora_up [out, r, 1, 1]
//   LyCORIS IA3:     weight ([out] / [1, out, 1, 1], or [in] / [1, in, 1, 1] with on_input 1) + on_input: W scaled
//                    per output row or input channel, delta = W * w
//   LyCORIS OFT:     oft_blocks [n, b, b] (n * b = out) (+ rescale [out, 1...]) (+ alpha: the constraint, not a
//                    scale): R = Cayley(Q) per block, Q = blocks - blocks^T scaled to norm alpha * out when larger;
//                    W' = rescale * (I + s (R - I))^T W blockwise (LyCORIS' diag-oft, also kohya's OFT)
//   LyCORIS BOFT:    oft_blocks [m, n, b, b] (+ rescale, alpha): m butterfly stages of n orthogonal b x b blocks,
//                    each stage s R + (1 - s) I (the strength enters every stage, as LyCORIS applies it)
//   LyCORIS GLoRA:   a1.weight [in, r], a2.weight [r, in], b1.weight [out, r], b2.weight [r, in, kh, kw] (+ bm.weight
//                    [r, r, kh, kw], Tucker) (+ alpha): delta = W a1 a2 + b1 b2 on W's input axis; the old layout
//                    (a1 [r, in], a2 [in, r], b1 [r, in], b2 [out, r]: W a2 a1 + b2 b1) told apart as ComfyUI does
//   norm / bias:     w_norm [C] (+ b_norm [C]) on a GroupNorm / LayerNorm; diff_b [out] on any module's bias
//   DoRA:            any of the above + dora_scale (kohya / LyCORIS) or lora_magnitude_vector (PEFT): merged as
//                    ComfyUI does, W' = W + strength * (m * W_s / ||W_s|| - W) with W_s = W + scale * delta(W),
//                    the norm per input channel (dora_scale [1, in...], LyCORIS' default) or per output row
//                    (dora_scale [out, ...], and PEFT's magnitude always)
// Scale rule (kohya / A1111 / ComfyUI, per module): alpha / rank, a missing alpha = rank (scale 1); LoKr with neither
// factor decomposed: 1 whatever alpha says; IA3, OFT, BOFT, full and norm diffs: 1 (OFT's alpha is its constraint).
// (diffusers 0.31 departs from it on files without alphas; not followed.) Biases (diff_b, b_norm) move by strength.
//
// Matching to the model (src/adapters/lora_apply.cpp): a module name is looked up among the component's Linear and
// Conv2d weights (Module::visit names) with '.' replaced by '_' (the way A1111 and LyCORIS match), also under the
// original single-file names of the UNet (SGM) and of Flux (BFL, whose fused qkv / linear1 write into row slices of
// nuance's split to_q / to_k / to_v / proj_mlp).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/weight_file.h"
#include "nn/module.h"

namespace nuance {

enum class LoraKind { LoRA, LoHa, LoKr, Full, IA3, OFT, BOFT, GLoRA, Norm };
const char* lora_kind_name(LoraKind k);

// One adapted layer as the file stores it.
struct LoraModule {
    std::string name;        // the file's module name, e.g. "lora_unet_down_blocks_0_attentions_0_proj_in"
    LoraKind kind = LoraKind::LoRA;
    // by role: "down", "up" | "w1_a" ... | "w1", "w2" ... | "diff" | "ia3", "on_input" | "oft_blocks", "rescale" |
    // "a1", "a2", "b1", "b2", "bm" | "w_norm"; "diff_b" / "b_norm": the bias' delta (any kind / norm)
    std::map<std::string, Tensor> t;
    bool has_alpha = false;
    double alpha = 0;
    Tensor dora_scale;       // DoRA magnitude, when present (kohya/LyCORIS dora_scale or PEFT lora_magnitude_vector)
    bool dora_peft = false;  // PEFT's spelling: the norm is always per output row

    int64_t rank() const;    // LoRA: down rows; LoHa: w1_b rows; LoKr: the decomposed factor's rank (0 = none)
    double scale() const;    // the per-module rule above
    // IA3, OFT, BOFT and GLoRA: the delta is a function of the layer's own weight (delta() needs it).
    bool uses_weight() const;
    // OFT and BOFT: the strength is not a factor of the delta; delta() applies it (and scale() does not apply).
    bool strength_inside() const;
    // The bias' delta (diff_b, or a norm's b_norm) before the strength, or nullptr.
    const Tensor* bias_delta() const;
    // Throws (naming the file, the module and both shapes) when the module cannot make a delta of `shape`: checked
    // for every module before a merge changes anything.
    void check_target(const Shape& shape, const std::string& file) const;
    // delta(W) in F32 with `shape` (the target weight's), before strength and scale are applied (but with the
    // strength for strength_inside() kinds). `weight`: the layer's current value as F32 [shape] (uses_weight()
    // kinds). Errors as check_target's.
    Tensor delta(const Shape& shape, const std::string& file, const Tensor& weight = Tensor(),
                 float strength = 1.0f) const;
};

struct LoraFile {
    std::string path;
    std::string name;  // file stem: what <lora:name:0.8> calls it
    std::vector<LoraModule> modules;
    std::vector<std::string> ignored;  // tensor names that are no adapter weights (metadata-ish, bias diffs...)
    std::map<std::string, std::string> metadata;
};

// Reads a LoRA / LyCORIS file (safetensors, or a torch .pt/.ckpt through the safe unpickler). Hostile files: every
// shape is checked against its partners and bounded (rank <= 4096, at most 100000 modules) before anything is
// computed; errors name the file, the module and the tensor.
LoraFile load_lora(const std::string& path);
// The same for tensors already read (`path` names them in messages).
LoraFile lora_from_weights(WeightFile w, const std::string& path);

// A model as a list of components: ("unet" | "transformer" | "text_encoder" | "text_encoder_2" | ..., module).
using LoraComponents = std::vector<std::pair<std::string, Module*>>;

// What applying one file did.
struct LoraApplyReport {
    std::string file;
    int64_t modules = 0, matched = 0;
    std::vector<std::string> unmatched;  // file module names that match no layer
    std::vector<std::string> warnings;   // e.g. "more than half of the modules match nothing", "no bias for diff_b"
};

// Where each of a file's modules lands in a model (the matching LoraMerge::apply uses, every naming it knows): the
// weight of the one whole layer it adapts, or nullptr (no such layer, another component, or a module spanning fused
// layers such as BFL's qkv). In the file's module order.
struct LoraModuleTarget {
    const LoraModule* module = nullptr;
    Param* weight = nullptr;
    std::string component;  // "unet", "text_encoder", ...
};
std::vector<LoraModuleTarget> lora_module_targets(const LoraComponents& model, const LoraFile& file);
// Keeps the original weight tensors of every layer a merge touched: restore() puts them back (bit-identical: the
// very tensors the model had), so one loaded model serves requests with different LoRAs.
class LoraMerge {
public:
    LoraMerge() = default;
    LoraMerge(const LoraMerge&) = delete;
    LoraMerge& operator=(const LoraMerge&) = delete;
    LoraMerge(LoraMerge&&) = default;
    LoraMerge& operator=(LoraMerge&&) = default;
    ~LoraMerge() = default;  // does NOT restore: call restore() (a CLI run just keeps the merged model)

    // Merges `file` at `strength` into the components' weights (in F32, stored back in each weight's dtype; F16/BF16
    // weights are widened to F32 for the sum and rounded once). Several calls stack. Errors (nothing is changed when
    // one is thrown): no module matches (names the file, the counts, examples of unmatched names and of the model's
    // names), a LoRA for another family (an SDXL file on SD1.x says so), a shape that does not fit (both shapes).
    // te_strength: the text encoders' strength when it differs (A1111 <lora:name:te:unet>).
    LoraApplyReport apply(const LoraComponents& model, const LoraFile& file, float strength,
                          std::optional<float> te_strength = std::nullopt);
    void restore();
    bool empty() const { return saved_.empty(); }
    size_t layers() const { return saved_.size(); }

private:
    std::vector<std::pair<Param*, Tensor>> saved_;  // first-touch originals
};

}  // namespace nuance
