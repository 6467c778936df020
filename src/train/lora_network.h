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
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autograd/nn_layers.h"
#include "autograd/param_grads.h"
#include "core/tensor.h"
#include "nn/module.h"

namespace nuance {

struct LoraTargets {
    bool attn = false, ff = false, all_linear = false, conv = false;
    std::string text;  // as given
};
// "attn", "attn+ff", "all-linear", "all-linear+conv", "attn+conv", "+conv" (= all-linear+conv) ... Errors name the
// unknown part and the allowed ones.
LoraTargets parse_lora_targets(const std::string& s);

struct LoraConfig {
    int64_t rank = 8;
    double alpha = 8;
    LoraTargets targets = parse_lora_targets("attn");
    // kohya's LoCon network_args conv_dim / conv_alpha: rank and alpha of the adapters on convolutions with a kernel
    // larger than 1x1 (the resnets' and samplers' 3x3s); 0: rank / alpha. The linears and 1x1 convs keep rank / alpha.
    int64_t conv_rank = 0;
    double conv_alpha = 0;
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
        Param down, up;        // F32, trainable
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

    // Adds every down/up as "<kohya name>.lora_down.weight" / ".lora_up.weight" (trainable).
    void register_params(ParamGrads& g);

    // The kohya file's tensors: lora_down / lora_up (F32) and alpha (0-d F32, the adapter's own) of every adapter.
    std::vector<std::pair<std::string, Tensor>> kohya_tensors() const;
    // Writes them atomically to `path` with `metadata` (the ss_* fields), every tensor as `dtype` (kohya's
    // --save_precision: F32, F16 or BF16; it casts the alphas too).
    void save_kohya(const std::string& path, const std::map<std::string, std::string>& metadata,
                    DType dtype = DType::F32) const;

    // LayerAdapters: scale * up(down(x)) for an adapted layer, else undefined.
    Var delta(const Linear& layer, const Var& x) override;
    Var delta(const Conv2d& layer, const Var& x) override;

private:
    void add_component(Module& m, bool te, const std::string& prefix, uint64_t seed);
    LoraConfig cfg_;
    std::vector<std::unique_ptr<Adapter>> adapters_;
    std::unordered_map<const Param*, Adapter*> by_weight_;
};

// Whether kohya's LoRA puts an adapter on the UNet module `module` (a weight of `dims` dimensions whose trailing
// kernel is kh x kw) for `t`; exposed for the tests.
bool lora_unet_target(const std::string& module, const Shape& weight_shape, const LoraTargets& t);
// kohya's text encoder set: self_attn q/k/v/out_proj and mlp fc1/fc2.
bool lora_te_target(const std::string& module);

}  // namespace nuance
