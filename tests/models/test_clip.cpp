#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "eval/golden/clip_golden.h"
#include "models/clip/clip_text.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/clip_text";

// clip_l / clip_g with the case's transformers config applied.
ClipTextModel load_clip(const std::string& which, const WeightFile& w) {
    ClipTextConfig cfg = ClipTextConfig::detect(w.tensors);
    cfg.apply_hf_config(nlohmann::json{{"num_attention_heads", 4},
                                       {"hidden_act", which == "clip_l" ? "quick_gelu" : "gelu"}});
    ClipTextModel m(cfg);
    load_module(m, w.tensors, {.source = w.path});
    return m;
}

}  // namespace

TEST(ClipText, GoldenAllOutputs) {
    const auto lines = check_golden_clip_text(kDir);
    // clip_l: last, 4 hidden states, penultimate, pooled; clip_g: the same + text_embeds.
    EXPECT_EQ(lines.size(), 15u);
    for (const auto& l : lines) {
        EXPECT_TRUE(l.pass) << l.name << ": " << l.reason;
        EXPECT_FALSE(l.skip) << l.name;
        EXPECT_GT(l.atol, 0.0) << l.name;
        EXPECT_LE(l.max_abs, l.atol) << l.name;
        EXPECT_EQ(l.name.rfind("clip_text/clip_", 0), 0u) << l.name;  // "<case>/<model>.<tensor>"
        // hidden_states have no suggested_atol in case.json: theirs is derived, and the line says so.
        const bool derived = l.name.find(".hidden_states.") != std::string::npos;
        EXPECT_EQ(l.reason, derived ? "atol derived (no suggested_atol in case.json)" : "") << l.name;
        // clip_l's loosest atol per unit of max|ref| is last_hidden_state's, 7.77e-5 / 3.699, times max|ref| (6.33).
        if (l.name == "clip_text/clip_l.hidden_states.3") {
            EXPECT_NEAR(l.atol, 1.33037e-4, 1e-9);
        }
    }
}

TEST(ClipText, DetectFromShapes) {
    const WeightFile l = load_safetensors(kDir + "/clip_l.safetensors");
    ClipTextConfig c = ClipTextConfig::detect(l.tensors);
    EXPECT_EQ(c.vocab, 49408);
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.intermediate, 64);
    EXPECT_EQ(c.layers, 3);
    EXPECT_EQ(c.max_positions, 77);
    EXPECT_EQ(c.projection_dim, 0);
    EXPECT_EQ(c.heads, 4);               // tiny-model fallback of the rule
    EXPECT_EQ(c.act, ClipAct::Gelu);     // the rule cannot know: config.json says quick_gelu
    c.apply_hf_config(nlohmann::json{{"hidden_size", 32}, {"num_attention_heads", 2}, {"hidden_act", "quick_gelu"},
                                     {"layer_norm_eps", 1e-6}});
    EXPECT_EQ(c.heads, 2);
    EXPECT_EQ(c.act, ClipAct::QuickGelu);
    EXPECT_FLOAT_EQ(c.eps, 1e-6f);
    // A full CLIPModel config nests the text part.
    c.apply_hf_config(nlohmann::json{{"text_config", {{"num_attention_heads", 8}}}});
    EXPECT_EQ(c.heads, 8);

    const WeightFile g = load_safetensors(kDir + "/clip_g.safetensors");
    const ClipTextConfig cg = ClipTextConfig::detect(g.tensors);
    EXPECT_EQ(cg.hidden, 48);
    EXPECT_EQ(cg.projection_dim, 32);

    EXPECT_EQ(ClipTextConfig::default_heads(768), 12);
    EXPECT_EQ(ClipTextConfig::default_heads(1024), 16);
    EXPECT_EQ(ClipTextConfig::default_heads(1280), 20);
    EXPECT_EQ(ClipTextConfig::default_act(768), ClipAct::QuickGelu);
    EXPECT_EQ(ClipTextConfig::default_act(1280), ClipAct::Gelu);
    EXPECT_EQ(parse_clip_act("gelu_new"), ClipAct::GeluTanh);
}

TEST(ClipText, DetectWithPrefixAndExtraBuffers) {
    const WeightFile l = load_safetensors(kDir + "/clip_l.safetensors");
    std::map<std::string, Tensor> single;
    const std::string prefix = "cond_stage_model.transformer.";
    for (const auto& [k, t] : l.tensors) single[prefix + k] = t;
    single[prefix + "text_model.embeddings.position_ids"] = Tensor::from_ids(std::vector<int64_t>(77, 0), {1, 77});
    single["model.diffusion_model.out.0.weight"] = Tensor::zeros({4});
    const ClipTextConfig c = ClipTextConfig::detect(single, prefix);
    EXPECT_EQ(c.hidden, 32);
    EXPECT_EQ(c.layers, 3);
    const auto stripped = strip_prefix(single, prefix);
    EXPECT_EQ(stripped.size(), l.tensors.size() + 1);
    ClipTextModel m(c);
    const auto unused = load_module(m, stripped, {.source = "single.safetensors"});
    ASSERT_EQ(unused.size(), 1u);  // the position_ids buffer is ignored
    EXPECT_EQ(unused[0], "text_model.embeddings.position_ids");
}

TEST(ClipText, EncodeSdClipSkip) {
    const WeightFile io = load_safetensors(kDir + "/io.safetensors");
    const WeightFile w = load_safetensors(kDir + "/clip_l.safetensors");
    const ClipTextModel m = load_clip("clip_l", w);
    const Tensor ids = io.tensors.at("input_ids_sd1");
    // clip_skip 1 = last layer with final LN (SD1 default); 2 = penultimate with final LN (A1111 "clip skip 2").
    EXPECT_LE(max_abs_diff(m.encode_sd(ids, 1, true), io.tensors.at("clip_l.last_hidden_state")), 7.77e-5f);
    EXPECT_LE(max_abs_diff(m.encode_sd(ids, 2, true), io.tensors.at("clip_l.penultimate_final_ln")), 7.86e-5f);
    // SDXL: hidden_states[-2] without final LN.
    const Tensor hs = io.tensors.at("clip_l.hidden_states");
    EXPECT_LE(max_abs_diff(m.encode_sd(ids, 2, false), hs[2]), 1e-4f);
    const ClipTextOutput o = m.forward(ids, 1);
    EXPECT_EQ(o.hidden_states.size(), 2u);
    EXPECT_LE(max_abs_diff(o.hidden_states[1], hs[1]), 1e-4f);
    EXPECT_FALSE(o.text_embeds.defined());  // CLIPTextModel has no projection
}

TEST(ClipText, PooledTakesFirstMaximum) {
    const WeightFile w = load_safetensors(kDir + "/clip_l.safetensors");
    const ClipTextModel m = load_clip("clip_l", w);
    // EOS-padded (SD1) and zero-padded (SD2) sequences: the pooled token is the first 49407.
    std::vector<int64_t> v = {49406, 320, 1125, 49407, 49407, 49407, 49406, 320, 49407, 0, 0, 0};
    const Tensor ids = Tensor::from_ids(v, {2, 6});
    const ClipTextOutput o = m.forward(ids);
    EXPECT_EQ(o.pooled.shape(), (Shape{2, 32}));
    EXPECT_EQ(max_abs_diff(o.pooled[0], o.last_hidden_state[0][3]), 0.0f);
    EXPECT_EQ(max_abs_diff(o.pooled[1], o.last_hidden_state[1][2]), 0.0f);
}

TEST(ClipText, LoadErrors) {
    const WeightFile w = load_safetensors(kDir + "/clip_l.safetensors");
    const ClipTextConfig c = ClipTextConfig::detect(w.tensors);
    {
        auto t = w.tensors;
        t.erase("text_model.encoder.layers.1.mlp.fc2.bias");
        ClipTextModel m(c);
        const std::string e = error_of([&] { load_module(m, t, {.source = "clip.safetensors"}); });
        EXPECT_THAT(e, HasSubstr("'text_model.encoder.layers.1.mlp.fc2.bias'"));
        EXPECT_THAT(e, HasSubstr("missing"));
        EXPECT_THAT(e, HasSubstr("clip.safetensors"));
    }
    {
        auto t = w.tensors;
        t["text_model.final_layer_norm.weight"] = Tensor::zeros({33});
        ClipTextModel m(c);
        const std::string e = error_of([&] { load_module(m, t, {.source = "clip.safetensors"}); });
        EXPECT_THAT(e, HasSubstr("text_model.final_layer_norm.weight"));
        EXPECT_THAT(e, HasSubstr("expected [32], got [33]"));
    }
    {
        auto t = w.tensors;
        t.erase("text_model.embeddings.token_embedding.weight");
        const std::string e = error_of([&] { ClipTextConfig::detect(t); });
        EXPECT_THAT(e, HasSubstr("text_model.embeddings.token_embedding.weight"));
        EXPECT_THAT(error_of([&] { ClipTextConfig::detect(w.tensors, "nope."); }),
                    HasSubstr("nope.text_model.embeddings.token_embedding.weight"));
    }
    ClipTextConfig c2 = c;
    EXPECT_THAT(error_of([&] { c2.apply_hf_config(nlohmann::json{{"hidden_size", 64}}); }),
                HasSubstr("hidden_size = 64 but the weights have 32"));
    EXPECT_THAT(error_of([&] { c2.apply_hf_config(nlohmann::json{{"num_attention_heads", 5}}); }),
                HasSubstr("does not divide hidden size 32"));
    EXPECT_THAT(error_of([&] { c2.apply_hf_config(nlohmann::json{{"hidden_act", "swish"}}); }),
                HasSubstr("unsupported hidden_act 'swish'"));
    EXPECT_THAT(error_of([&] { c2.apply_hf_config(nlohmann::json::array()); }), HasSubstr("JSON object"));
    c2.heads = 3;
    EXPECT_THAT(error_of([&] { ClipTextModel bad(c2); }), HasSubstr("not divisible into 3 heads"));
}

TEST(ClipText, ForwardErrors) {
    const WeightFile w = load_safetensors(kDir + "/clip_l.safetensors");
    const ClipTextModel m = load_clip("clip_l", w);
    EXPECT_THAT(error_of([&] { m.forward(Tensor::from_ids(std::vector<int64_t>(78, 1), {1, 78})); }),
                HasSubstr("78 tokens"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::zeros({1, 77})); }), HasSubstr("must be integers"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::from_ids({1, 2, 3}, {3})); }), HasSubstr("[B, L]"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::from_ids({1, 49408}, {1, 2})); }), HasSubstr("out of range"));
    EXPECT_THAT(error_of([&] { m.forward(Tensor::from_ids({1, 2}, {1, 2}), 4); }), HasSubstr("stop_at_layer 4"));
    EXPECT_THAT(error_of([&] { m.encode_sd(Tensor::from_ids({1, 2}, {1, 2}), 0); }), HasSubstr("clip_skip 0"));
    ClipTextModel unloaded(ClipTextConfig::detect(w.tensors));
    EXPECT_THAT(error_of([&] { unloaded.forward(Tensor::from_ids({1, 2}, {1, 2})); }), HasSubstr("not loaded"));
}

TEST(ClipText, GoldenMissingCase) {
    try {
        check_golden_clip_text("/nonexistent/clip_text");
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::NotFound);
        EXPECT_THAT(e.what(), HasSubstr("golden case '/nonexistent/clip_text' has no case.json"));
    }
}
