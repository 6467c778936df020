// Original single-file SD checkpoints (CompVis / SGM layout) -> diffusers components and back, against
// tests/data/golden/original_format (files written by diffusers' own diffusers->original conversion scripts) and
// the component goldens they were made from (unet_sd15, unet_sdxl, vae/vae_sd, clip_text/clip_l + clip_g).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "models/convert/original_format.h"

using namespace nuance;
using ::testing::HasSubstr;
using TensorMap = std::map<std::string, Tensor>;

namespace {

const std::string kGolden = std::string(NUANCE_TEST_DATA) + "/golden/";

TensorMap load(const std::string& rel) { return load_safetensors(kGolden + rel).tensors; }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// Bit-exact comparison after conversion to f32 (F16 -> F32 is exact).
bool same_values(const Tensor& a, const Tensor& b) {
    if (a.shape() != b.shape()) return false;
    auto va = a.to_vector(), vb = b.to_vector();
    return va.size() == vb.size() && std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

std::set<std::string> keys_of(const TensorMap& m) {
    std::set<std::string> s;
    for (const auto& [k, v] : m) s.insert(k);
    return s;
}

// Every converted tensor equals the golden component tensor with the same name, and the key sets are equal.
void expect_equals_golden(const TensorMap& got, const TensorMap& golden, const std::string& what) {
    EXPECT_EQ(keys_of(got), keys_of(golden)) << what;
    size_t checked = 0;
    for (const auto& [k, g] : golden) {
        auto it = got.find(k);
        if (it == got.end()) continue;
        EXPECT_TRUE(same_values(it->second, g))
            << what << " '" << k << "': got " << it->second.str() << ", golden " << g.str();
        ++checked;
    }
    EXPECT_EQ(checked, golden.size()) << what;
}

const TensorMap& component(const ComponentWeights& cw, const std::string& name) {
    if (name == "unet") return cw.unet;
    if (name == "vae") return cw.vae;
    if (name == "text_encoder") return cw.text_encoder;
    if (name == "text_encoder_2") return cw.text_encoder_2;
    throw std::runtime_error("bad component " + name);
}

// Checks every entry of key_map_*.json: original key -> (component, key(s), transform).
void expect_key_map(const TensorMap& original, const ComponentWeights& cw, const std::string& map_file) {
    std::ifstream f(kGolden + "original_format/" + map_file);
    ASSERT_TRUE(f.good()) << map_file;
    auto j = nlohmann::json::parse(f);
    size_t targets = 0;
    std::map<std::string, size_t> transforms;
    for (const auto& [okey, e] : j.items()) {
        SCOPED_TRACE(okey);
        ASSERT_TRUE(original.count(okey));
        const Tensor& o = original.at(okey);
        const TensorMap& comp = component(cw, e.at("component").get<std::string>());
        const std::string tr = e.at("transform").get<std::string>();
        transforms[tr.substr(0, tr.find(' '))]++;
        if (tr == "concat_dim0 (q,k,v)") {
            auto keys = e.at("keys").get<std::vector<std::string>>();
            ASSERT_EQ(keys.size(), 3u);
            const int64_t d = o.size(0) / 3;
            for (int64_t q = 0; q < 3; ++q) {
                ASSERT_TRUE(comp.count(keys[(size_t)q])) << keys[(size_t)q];
                EXPECT_TRUE(same_values(comp.at(keys[(size_t)q]), o.narrow(0, q * d, d))) << keys[(size_t)q];
                ++targets;
            }
            continue;
        }
        const std::string key = e.at("key").get<std::string>();
        ASSERT_TRUE(comp.count(key)) << key;
        const Tensor& c = comp.at(key);
        ++targets;
        if (tr == "none") {
            EXPECT_TRUE(same_values(c, o)) << key;
        } else if (tr == "transpose") {
            ASSERT_EQ(o.dim(), 2);
            EXPECT_EQ(c.shape(), (Shape{o.size(1), o.size(0)}));
            EXPECT_TRUE(same_values(c, o.transpose(0, 1).contiguous())) << key;
        } else if (tr.starts_with("reshape")) {  // diffusers [C, C] stored as a [C, C, 1, 1] conv
            ASSERT_EQ(o.dim(), 4);
            EXPECT_EQ(c.shape(), (Shape{o.size(0), o.size(1)}));
            EXPECT_TRUE(same_values(c.reshape(o.shape()), o)) << key;
        } else {
            ADD_FAILURE() << "unknown transform " << tr;
        }
    }
    // Nothing converted that the key map does not account for.
    EXPECT_EQ(targets, cw.unet.size() + cw.vae.size() + cw.text_encoder.size() + cw.text_encoder_2.size());
    EXPECT_EQ(j.size(), original.size());
    for (const auto& [t, n] : transforms) EXPECT_GT(n, 0u) << t;
}

void expect_roundtrip(const TensorMap& original, const ComponentWeights& cw) {
    auto back = to_original(cw);
    TensorMap m;
    for (const auto& [k, v] : back) EXPECT_TRUE(m.emplace(k, v).second) << "duplicate " << k;
    EXPECT_EQ(keys_of(m), keys_of(original));
    for (const auto& [k, v] : original) {
        auto it = m.find(k);
        if (it == m.end()) continue;
        EXPECT_EQ(it->second.dtype(), v.dtype()) << k;
        EXPECT_TRUE(same_values(it->second, v)) << k << ": got " << it->second.str() << ", original " << v.str();
    }
    for (size_t i = 1; i < back.size(); ++i) EXPECT_LT(back[i - 1].first, back[i].first);  // sorted
}

TensorMap without_prefix(const TensorMap& t, const std::string& prefix) {
    TensorMap m;
    for (const auto& [k, v] : t)
        if (!k.starts_with(prefix)) m[k] = v;
    return m;
}

TensorMap rename_prefix(const TensorMap& t, const std::string& from, const std::string& to) {
    TensorMap m;
    for (const auto& [k, v] : t) m[k.starts_with(from) ? to + k.substr(from.size()) : k] = v;
    return m;
}

class OriginalFormat : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        sd15_ = new TensorMap(load("original_format/sd15_original.safetensors"));
        sdxl_ = new TensorMap(load("original_format/sdxl_original.safetensors"));
    }
    static void TearDownTestSuite() {
        delete sd15_;
        delete sdxl_;
    }
    static TensorMap* sd15_;
    static TensorMap* sdxl_;
};
TensorMap* OriginalFormat::sd15_ = nullptr;
TensorMap* OriginalFormat::sdxl_ = nullptr;

}  // namespace

TEST_F(OriginalFormat, Sd15MatchesKeyMapAndComponentGoldens) {
    ASSERT_EQ(sd15_->size(), 982u);
    EXPECT_TRUE(is_original_layout(*sd15_));
    ComponentWeights cw = split_original(*sd15_);
    EXPECT_EQ(cw.family, "sd1");
    EXPECT_TRUE(cw.text_encoder_2.empty());
    expect_key_map(*sd15_, cw, "key_map_sd15.json");
    expect_equals_golden(cw.unet, load("unet_sd15/unet.safetensors"), "unet");
    expect_equals_golden(cw.vae, load("vae/vae_sd.safetensors"), "vae");
    expect_equals_golden(cw.text_encoder, load("clip_text/clip_l.safetensors"), "text_encoder");
    // SD1 proj_in/proj_out stay 1x1 convs; the VAE attention becomes Linear [C, C].
    EXPECT_EQ(cw.unet.at("down_blocks.0.attentions.0.proj_in.weight").dim(), 4);
    EXPECT_EQ(cw.vae.at("decoder.mid_block.attentions.0.to_q.weight").dim(), 2);
}

TEST_F(OriginalFormat, SdxlMatchesKeyMapAndComponentGoldens) {
    ASSERT_EQ(sdxl_->size(), 1057u);
    ComponentWeights cw = split_original(*sdxl_);
    EXPECT_EQ(cw.family, "sdxl");
    expect_key_map(*sdxl_, cw, "key_map_sdxl.json");
    expect_equals_golden(cw.unet, load("unet_sdxl/unet.safetensors"), "unet");
    expect_equals_golden(cw.vae, load("vae/vae_sd.safetensors"), "vae");
    expect_equals_golden(cw.text_encoder, load("clip_text/clip_l.safetensors"), "text_encoder");
    expect_equals_golden(cw.text_encoder_2, load("clip_text/clip_g.safetensors"), "text_encoder_2");
    EXPECT_EQ(cw.unet.at("down_blocks.1.attentions.0.proj_in.weight").dim(), 2);  // linear projections
    // Transformer depth 2 on levels 1-2 and in the mid block, 1 nowhere else.
    EXPECT_TRUE(cw.unet.count("mid_block.attentions.0.transformer_blocks.1.attn1.to_q.weight"));
    EXPECT_FALSE(cw.unet.count("down_blocks.0.attentions.0.norm.weight"));
}

TEST_F(OriginalFormat, RoundTripSd15) { expect_roundtrip(*sd15_, split_original(*sd15_)); }
TEST_F(OriginalFormat, RoundTripSdxl) { expect_roundtrip(*sdxl_, split_original(*sdxl_)); }

TEST_F(OriginalFormat, UnusedKeysAreDropped) {
    TensorMap t = *sd15_;
    t["model_ema.decay"] = Tensor::scalar(0.999f);
    t["model_ema.diffusion_modelinput_blocks00weight"] = Tensor::zeros({8, 4, 3, 3});
    t["betas"] = Tensor::zeros({1000});
    t["alphas_cumprod"] = Tensor::zeros({1000});
    t["cond_stage_model.transformer.text_model.embeddings.position_ids"] = Tensor::zeros({1, 77}, DType::I64);
    t["first_stage_model.loss.logvar"] = Tensor::zeros({});
    ComponentWeights cw = split_original(t);
    ComponentWeights ref = split_original(*sd15_);
    EXPECT_EQ(keys_of(cw.unet), keys_of(ref.unet));
    EXPECT_EQ(keys_of(cw.vae), keys_of(ref.vae));
    EXPECT_EQ(keys_of(cw.text_encoder), keys_of(ref.text_encoder));
}

TEST_F(OriginalFormat, OldClipLayoutWithoutTextModelLevel) {
    TensorMap t = rename_prefix(*sd15_, "cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.");
    ComponentWeights cw = split_original(t);
    EXPECT_EQ(cw.family, "sd1");
    expect_equals_golden(cw.text_encoder, load("clip_text/clip_l.safetensors"), "text_encoder");
}

// SD2 layout: OpenCLIP text encoder under cond_stage_model.model (built from SDXL's bigG for the test).
TEST_F(OriginalFormat, Sd2OpenClipTextEncoder) {
    TensorMap t = without_prefix(*sd15_, "cond_stage_model.");
    for (const auto& [k, v] : *sdxl_)
        if (k.starts_with("conditioner.embedders.1.model."))
            t["cond_stage_model.model." + k.substr(std::strlen("conditioner.embedders.1.model."))] = v;
    t["cond_stage_model.model.logit_scale"] = Tensor::scalar(4.6f);  // real SD2 files have it; dropped
    ComponentWeights cw = split_original(t);
    EXPECT_EQ(cw.family, "sd2");
    EXPECT_TRUE(cw.text_encoder_2.empty());
    expect_equals_golden(cw.text_encoder, load("clip_text/clip_g.safetensors"), "text_encoder");
    t.erase("cond_stage_model.model.logit_scale");
    expect_roundtrip(t, cw);
}

// SDXL refiner: only conditioner.embedders.0, and it is OpenCLIP bigG -> text_encoder_2.
TEST_F(OriginalFormat, SdxlRefinerLayout) {
    TensorMap t = without_prefix(*sdxl_, "conditioner.embedders.0.");
    t = rename_prefix(t, "conditioner.embedders.1.", "conditioner.embedders.0.");
    ComponentWeights cw = split_original(t);
    EXPECT_EQ(cw.family, "sdxl_refiner");
    EXPECT_TRUE(cw.text_encoder.empty());
    expect_equals_golden(cw.text_encoder_2, load("clip_text/clip_g.safetensors"), "text_encoder_2");
    expect_roundtrip(t, cw);
}

TEST_F(OriginalFormat, UnetOnlyFile) {
    TensorMap t;
    for (const auto& [k, v] : *sd15_)
        if (k.starts_with("model.diffusion_model.")) t[k] = v;
    ComponentWeights cw = split_original(t);
    EXPECT_EQ(cw.family, "unknown");  // tiny context width (32) names no known text encoder
    EXPECT_TRUE(cw.vae.empty() && cw.text_encoder.empty());
    expect_equals_golden(cw.unet, load("unet_sd15/unet.safetensors"), "unet");
    expect_roundtrip(t, cw);
}

TEST_F(OriginalFormat, ErrorNoDiffusionModelKeys) {
    TensorMap t = without_prefix(*sd15_, "model.diffusion_model.");
    EXPECT_FALSE(is_original_layout(t));
    std::string msg = error_of([&] { split_original(t); });
    EXPECT_THAT(msg, HasSubstr("no 'model.diffusion_model.*' tensors"));
    EXPECT_THAT(msg, HasSubstr("first_stage_model.*"));
    EXPECT_THAT(msg, HasSubstr("cond_stage_model.transformer.*"));
    EXPECT_THAT(error_of([&] { split_original(TensorMap{}); }), HasSubstr("no tensors at all"));
    // A diffusers-layout UNet is not an original checkpoint either.
    EXPECT_THAT(error_of([&] { split_original(load("unet_sd15/unet.safetensors")); }), HasSubstr("down_blocks.*"));
}

TEST_F(OriginalFormat, ErrorMissingInputBlock) {
    TensorMap t = without_prefix(*sd15_, "model.diffusion_model.input_blocks.4.");
    std::string msg = error_of([&] { split_original(t); });
    EXPECT_THAT(msg, HasSubstr("input_blocks: index 4 is missing (found 0-3, 5-11)"));
    try {
        split_original(t);
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    }
}

TEST_F(OriginalFormat, ErrorInconsistentUnetStructure) {
    // The last output block gone: the up path no longer mirrors the down path.
    TensorMap t = without_prefix(*sd15_, "model.diffusion_model.output_blocks.11.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("output_blocks has 11 blocks"));
    // An upsampler dropped: up level 0 runs on into level 1.
    t = without_prefix(*sd15_, "model.diffusion_model.output_blocks.2.1.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("no Upsample at its end"));
    // One attention missing inside an attention level.
    t = without_prefix(*sd15_, "model.diffusion_model.input_blocks.2.1.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("mixes ResBlocks with and without attention"));
    // A transformer block missing in the middle of a SpatialTransformer (SDXL depth 2).
    t = without_prefix(*sdxl_, "model.diffusion_model.middle_block.1.transformer_blocks.0.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("middle_block.1.transformer_blocks: index 0 is missing"));
    // Unknown tensors inside the UNet are errors, not silently dropped weights.
    t = *sd15_;
    t["model.diffusion_model.input_blocks.1.0.in_layers.9.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("input_blocks.1.0.in_layers.9.weight"));
    t = *sd15_;
    t["model.diffusion_model.input_blocks.1.2.mystery.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("mystery.weight"));
    t = *sd15_;
    t["model.diffusion_model.input_blocks.99999999999.0.op.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("unrecognised tensor"));
    t = *sd15_;
    t["model.diffusion_model.time_embed.0.extra.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("'model.diffusion_model.time_embed.0.extra.weight'"));
    t = *sd15_;
    t["model.diffusion_model.input_blocks"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("unrecognised tensor"));
}

TEST_F(OriginalFormat, ErrorInconsistentVae) {
    TensorMap t = without_prefix(*sd15_, "first_stage_model.decoder.up.1.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("decoder.up: index 1 is missing (found 0, 2-3)"));
    t = without_prefix(*sd15_, "first_stage_model.encoder.down.2.block.0.");
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("encoder.down.2.block: index 0 is missing"));
    t = *sd15_;
    t["first_stage_model.encoder.mid.attn_2.q.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("'first_stage_model.encoder.mid.attn_2.q.weight'"));
    t = *sd15_;
    t["first_stage_model.encoder.mid.attn_1.q.weight"] = Tensor::zeros({32, 32, 3, 3});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("expected a [C, C, 1, 1] or [C, C] weight, got [32, 32, 3, 3]"));
}

TEST_F(OriginalFormat, ErrorBadOpenClip) {
    TensorMap t = *sdxl_;
    t["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"] = Tensor::zeros({47, 48});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("expected a fused q/k/v tensor with 3*D rows"));
    t = *sdxl_;
    t["conditioner.embedders.1.model.transformer.resblocks.0.attn.weird"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { split_original(t); }), HasSubstr("unrecognised OpenCLIP tensor"));
}

TEST_F(OriginalFormat, ToOriginalErrors) {
    ComponentWeights cw = split_original(*sdxl_);
    cw.family = "sd3";
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("unknown family 'sd3'"));
    cw.family = "sdxl_refiner";
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("has only text_encoder_2"));
    cw.family = "sd1";
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("text_encoder_2 has 53 tensors"));
    cw = split_original(*sdxl_);
    cw.text_encoder_2.erase("text_model.encoder.layers.1.self_attn.k_proj.weight");
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("k_proj is missing"));
    cw = split_original(*sd15_);
    cw.unet.erase("down_blocks.1.resnets.0.conv1.weight");
    cw.unet.erase("down_blocks.1.resnets.0.conv1.bias");
    cw.unet.erase("down_blocks.1.resnets.0.conv2.weight");
    cw.unet.erase("down_blocks.1.resnets.0.conv2.bias");
    cw.unet.erase("down_blocks.1.resnets.0.norm1.weight");
    cw.unet.erase("down_blocks.1.resnets.0.norm1.bias");
    cw.unet.erase("down_blocks.1.resnets.0.norm2.weight");
    cw.unet.erase("down_blocks.1.resnets.0.norm2.bias");
    cw.unet.erase("down_blocks.1.resnets.0.time_emb_proj.weight");
    cw.unet.erase("down_blocks.1.resnets.0.time_emb_proj.bias");
    cw.unet.erase("down_blocks.1.resnets.0.conv_shortcut.weight");
    cw.unet.erase("down_blocks.1.resnets.0.conv_shortcut.bias");
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("down_blocks.1.resnets: index 0 is missing"));
    cw = split_original(*sd15_);
    cw.unet["extra.weight"] = Tensor::zeros({1});
    EXPECT_THAT(error_of([&] { to_original(cw); }), HasSubstr("unet: unrecognised tensor 'extra.weight'"));
}

// SD2-shaped UNet (linear projections, per-level heads): diffusers -> original -> diffusers is the identity.
TEST(OriginalFormatStructure, Sd2UnetRoundTrip) {
    ComponentWeights cw;
    cw.family = "sd2";
    cw.unet = load("unet_sd2/unet.safetensors");
    auto orig = to_original(cw);
    TensorMap m(orig.begin(), orig.end());
    EXPECT_EQ(m.at("model.diffusion_model.input_blocks.4.1.proj_in.weight").dim(), 2);
    ComponentWeights back = split_original(m);
    expect_equals_golden(back.unet, cw.unet, "unet");
}

// Structures the goldens do not cover: 3 ResBlocks per level and transformer depth 10 (SDXL base has depth 10 on
// its last level). The index arithmetic is checked by hand: level i starts at input_blocks 1 + 4i.
TEST(OriginalFormatStructure, MoreResnetsPerLevelAndDeepTransformers) {
    TensorMap unet = load("unet_sd15/unet.safetensors");
    TensorMap extra;
    for (const auto& [k, v] : unet) {
        auto add_copy = [&](const std::string& from, const std::string& to) {
            if (k.starts_with(from)) extra[to + k.substr(from.size())] = v;
        };
        for (int i = 0; i < 4; ++i) {
            add_copy(str("down_blocks.", i, ".resnets.1."), str("down_blocks.", i, ".resnets.2."));
            add_copy(str("down_blocks.", i, ".attentions.1."), str("down_blocks.", i, ".attentions.2."));
            add_copy(str("up_blocks.", i, ".resnets.2."), str("up_blocks.", i, ".resnets.3."));
            add_copy(str("up_blocks.", i, ".attentions.2."), str("up_blocks.", i, ".attentions.3."));
        }
        for (int b = 1; b < 10; ++b)
            add_copy("mid_block.attentions.0.transformer_blocks.0.",
                     str("mid_block.attentions.0.transformer_blocks.", b, "."));
    }
    unet.insert(extra.begin(), extra.end());
    ComponentWeights cw;
    cw.family = "sd1";
    cw.unet = unet;
    auto orig = to_original(cw);
    TensorMap m(orig.begin(), orig.end());
    const std::string p = "model.diffusion_model.";
    auto same = [&](const std::string& okey, const std::string& dkey) {
        ASSERT_TRUE(m.count(p + okey)) << okey;
        EXPECT_TRUE(same_values(m.at(p + okey), unet.at(dkey))) << okey;
    };
    same("input_blocks.4.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight");
    same("input_blocks.5.0.in_layers.0.weight", "down_blocks.1.resnets.0.norm1.weight");
    same("input_blocks.7.1.proj_in.weight", "down_blocks.1.attentions.2.proj_in.weight");
    same("input_blocks.13.0.in_layers.2.weight", "down_blocks.3.resnets.0.conv1.weight");
    same("input_blocks.15.0.out_layers.3.weight", "down_blocks.3.resnets.2.conv2.weight");
    same("middle_block.1.transformer_blocks.9.attn1.to_q.weight",
         "mid_block.attentions.0.transformer_blocks.9.attn1.to_q.weight");
    same("output_blocks.3.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight");
    same("output_blocks.4.0.skip_connection.weight", "up_blocks.1.resnets.0.conv_shortcut.weight");
    same("output_blocks.7.2.conv.weight", "up_blocks.1.upsamplers.0.conv.weight");
    same("output_blocks.15.1.proj_out.weight", "up_blocks.3.attentions.3.proj_out.weight");
    EXPECT_FALSE(m.count(p + "input_blocks.16.0.in_layers.0.weight"));
    EXPECT_FALSE(m.count(p + "output_blocks.16.0.in_layers.0.weight"));
    ComponentWeights back = split_original(m);
    expect_equals_golden(back.unet, unet, "unet");
}

TEST_F(OriginalFormat, FamilyOfUnetOnlySdxl) {
    TensorMap t;
    for (const auto& [k, v] : *sdxl_)
        if (k.starts_with("model.diffusion_model.")) t[k] = v;
    ComponentWeights cw = split_original(t);
    EXPECT_EQ(cw.family, "sdxl");  // label_emb (ADM) names it
    EXPECT_TRUE(cw.text_encoder.empty() && cw.text_encoder_2.empty() && cw.vae.empty());
    expect_roundtrip(t, cw);
}
