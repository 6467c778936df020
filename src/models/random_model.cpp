#include "models/random_model.h"

#include "models/random_families.h"

#include "io/safetensors.h"
#include "models/clip/clip_text.h"
#include "models/convert/original_format.h"
#include "models/unet/unet2d.h"
#include "models/vae/autoencoder_kl.h"

namespace nuance {

namespace {

std::map<std::string, Tensor> random_weights(Module& m, uint64_t seed, DType dt) {
    init_random(m, seed);
    std::map<std::string, Tensor> out;
    for (auto& [k, v] : state_dict(m)) out[k] = v.to(dt);
    return out;
}

UNetConfig unet_config(const std::string& fam, bool tiny) {
    UNetConfig c;
    c.norm_num_groups = 32;
    if (fam == "sdxl") {
        c.block_out_channels = tiny ? std::vector<int64_t>{32, 64, 128} : std::vector<int64_t>{320, 640, 1280};
        c.down_attn = {false, true, true};
        c.down_depth = tiny ? std::vector<int64_t>{0, 1, 2} : std::vector<int64_t>{0, 2, 10};
        c.up_depth = tiny ? std::vector<int64_t>{2, 1, 0} : std::vector<int64_t>{10, 2, 0};
        c.mid_depth = tiny ? 2 : 10;
        c.use_linear_projection = true;
        c.cross_attention_dim = tiny ? 64 + 128 : 2048;
        c.text_time = true;
        c.addition_time_embed_dim = tiny ? 32 : 256;
        c.add_in_dim = (tiny ? 128 : 1280) + 6 * c.addition_time_embed_dim;
    } else {
        c.block_out_channels = tiny ? std::vector<int64_t>{32, 64, 64, 64} : std::vector<int64_t>{320, 640, 1280, 1280};
        c.down_attn = {true, true, true, false};
        c.down_depth = {1, 1, 1, 0};
        c.up_depth = {0, 1, 1, 1};
        c.mid_depth = 1;
        c.use_linear_projection = fam == "sd2";
        c.cross_attention_dim = fam == "sd2" ? (tiny ? 64 : 1024) : (tiny ? 64 : 768);
    }
    c.time_embed_dim = c.block_out_channels[0] * 4;
    for (int64_t ch : c.block_out_channels) c.heads.push_back(c.use_linear_projection ? std::max<int64_t>(1, ch / 64) : 8);
    return c;
}

ClipTextConfig clip_config(int64_t hidden, int64_t layers, ClipAct act, int64_t projection) {
    ClipTextConfig c;
    c.hidden = hidden;
    c.intermediate = hidden * 4;
    c.layers = layers;
    c.heads = ClipTextConfig::default_heads(hidden);
    c.act = act;
    c.projection_dim = projection;
    return c;
}

}  // namespace

int64_t write_random_checkpoint(const std::string& path, const RandomModelOptions& o) {
    NUANCE_CHECK(o.family == "sd15" || o.family == "sd1" || o.family == "sd2" || o.family == "sdxl",
                 "unknown family '", o.family, "' (valid: sd15, sd2, sdxl, ", random_family_names(), ")");
    NUANCE_CHECK(o.dtype == DType::F16 || o.dtype == DType::F32 || o.dtype == DType::BF16, "unsupported dtype ",
                 dtype_name(o.dtype), " (valid: f16, f32, bf16)");
    const std::string fam = o.family == "sd1" ? "sd15" : o.family;
    const bool tiny = o.tiny;
    ComponentWeights cw;
    cw.family = fam == "sd15" ? "sd1" : fam;
    {
        UNetConfig uc = unet_config(fam, tiny);
        if (o.inpaint) uc.in_channels = 9;
        UNet2DConditionModel unet(uc);
        cw.unet = random_weights(unet, o.seed + 1, o.dtype);
    }
    {
        AutoencoderKLConfig vc;
        vc.block_out_channels = tiny ? std::vector<int64_t>{32, 32, 64, 64} : std::vector<int64_t>{128, 256, 512, 512};
        AutoencoderKL vae(vc);
        cw.vae = random_weights(vae, o.seed + 2, o.dtype);
    }
    if (fam == "sd15") {
        ClipTextModel te(clip_config(tiny ? 64 : 768, tiny ? 2 : 12, ClipAct::QuickGelu, 0));
        cw.text_encoder = random_weights(te, o.seed + 3, o.dtype);
    } else if (fam == "sd2") {  // OpenCLIP ViT-H, all 24 layers as the original file has them
        ClipTextModel te(clip_config(tiny ? 64 : 1024, tiny ? 3 : 24, ClipAct::Gelu, tiny ? 64 : 1024));
        cw.text_encoder = random_weights(te, o.seed + 3, o.dtype);
    } else {
        ClipTextModel te1(clip_config(tiny ? 64 : 768, tiny ? 2 : 12, ClipAct::QuickGelu, 0));
        cw.text_encoder = random_weights(te1, o.seed + 3, o.dtype);
        ClipTextModel te2(clip_config(tiny ? 128 : 1280, tiny ? 2 : 32, ClipAct::Gelu, tiny ? 128 : 1280));
        cw.text_encoder_2 = random_weights(te2, o.seed + 4, o.dtype);
    }
    auto tensors = to_original(cw);
    int64_t n = 0;
    for (const auto& [k, v] : tensors) n += v.numel();
    save_safetensors(path, tensors, {{"nuance", str("make-random family=", fam, tiny ? " tiny" : "", o.inpaint ? " inpaint" : "", " seed=", o.seed)}});
    return n;
}

}  // namespace nuance
