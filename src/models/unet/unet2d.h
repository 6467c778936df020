// UNet2DConditionModel (Rombach et al. 2022, LDM; SDXL: Podell et al. 2023) with diffusers key names.
#pragma once
#include "models/unet/unet_blocks.h"
#include "models/unet/unet_config.h"

namespace nuance {

class Var;

using TimestepEmbedding = MlpEmbedder;  // nn/layers.h

struct UNetLevel : Module {  // one down or up block
    std::vector<ResnetBlock> resnets;
    std::vector<SpatialTransformer> attentions;
    std::vector<Downsample> down;
    std::vector<Upsample> up;
    void visit(ParamVisitor& v) override {
        v("resnets", resnets);
        if (!attentions.empty()) v("attentions", attentions);
        if (!down.empty()) v("downsamplers", down);
        if (!up.empty()) v("upsamplers", up);
    }
};

// Extra inputs: SDXL micro-conditioning, and (later) ControlNet residuals.
struct UNetExtra {
    Tensor text_embeds;  // [B, P] pooled text embedding (SDXL)
    Tensor time_ids;     // [B, 6] (orig_h, orig_w, crop_top, crop_left, target_h, target_w)
    std::vector<Tensor> down_residuals;  // added to the skip tensors, in order (ControlNet)
    Tensor mid_residual;
    // Guidance-conditioned students (time_cond_proj_dim > 0): [B or 1, time_cond_proj_dim], e.g.
    // guidance_scale_embedding(w). Undefined: no guidance input (diffusers' timestep_cond=None).
    Tensor timestep_cond;
};

// diffusers' get_guidance_scale_embedding (LCM pipeline / train_lcm_distill_sd): for each w, with w' = 1000 w and
// f_k = exp(-k ln(10000) / (dim/2 - 1)), k < dim/2: [sin(w' f_k) for k, cos(w' f_k) for k] (+ a 0 when dim is odd).
// -> [w.size(), dim] F32. dim in 2..65536.
Tensor guidance_scale_embedding(const std::vector<float>& w, int64_t dim);

class UNet2DConditionModel : public Module {
public:
    explicit UNet2DConditionModel(const UNetConfig& c);
    const UNetConfig& config() const { return cfg_; }
    // x: [B, Cin, h, w], t: [B] or scalar timesteps (float), context: [B, S, Cc] -> [B, Cout, h, w]
    Tensor forward(const Tensor& x, const Tensor& t, const Tensor& context, const UNetExtra& extra = {}) const;
    // The same forward on Vars (training: records the tape; weights through param_var, so bind a ParamGrads, or use
    // NoGradGuard). The extras are constants (no gradient).
    Var forward(const Var& x, const Tensor& t, const Var& context, const UNetExtra& extra = {}) const;
    void visit(ParamVisitor& v) override;

private:
    // The one definition of both forwards (models/unet/unet_forward.h, nn/apply.h), instantiated in unet2d.cpp.
    template <class V>
    V forward_impl(const V& x, const Tensor& t, const V& context, const UNetExtra& extra) const;
    UNetConfig cfg_;
    Conv2d conv_in_, conv_out_;
    TimestepEmbedding time_embedding_, add_embedding_;
    Linear time_cond_proj_;  // time_embedding.cond_proj (no bias), when time_cond_proj_dim > 0
    std::vector<UNetLevel> down_, up_;
    ResnetBlock mid_res0_;
    std::vector<SpatialTransformer> mid_attn_;
    std::vector<ResnetBlock> mid_res_;
    GroupNorm norm_out_;
};

}  // namespace nuance
