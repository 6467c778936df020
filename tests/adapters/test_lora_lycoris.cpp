// LyCORIS' IA3, OFT (diag-oft), BOFT, GLoRA, full-diff (with bias diffs) and norm adapters: files LyCORIS itself
// made, on the built-in model, merged by nuance against LyCORIS' own forward (tests/data/lycoris_algos, made by
// tools/make_lycoris_algos_ref.py), hand-computed cases, and the errors of files that do not fit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <unistd.h>

#include "../test_util.h"
#include "lora_test_util.h"
#include "adapters/lora.h"
#include "autograd/autograd.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/default_model.h"
#include "models/sd/stable_diffusion.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "train/model_graph.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using test::error_of;

const std::string kData = std::string(NUANCE_TEST_DATA) + "/lycoris_algos/";
const std::string kEmoji = (fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName).string();

float largest_diff(const Tensor& a, const Tensor& b) {
    const Tensor d = (a.f32() - b.f32()).contiguous();
    float m = 0;
    for (int64_t i = 0; i < d.numel(); ++i) m = std::max(m, std::fabs(d.data<float>()[i]));
    return m;
}

void widen(Module& m) {
    for_each_param(m, [](const std::string&, Param& p) {
        if (p.value.defined() && p.value.dtype() != DType::F32) p.value = p.value.f32().contiguous();
    });
}

struct Dir : test::AdapterDir {
    Dir() : test::AdapterDir("nuance_lyco_") {}
};

Tensor T(const std::vector<float>& v, const Shape& s) { return Tensor::from_vector(v, s); }

TEST(LycorisAlgos, LyCORISFilesMergeAsLyCORISRunsThem) {
    const WeightFile ref = load_safetensors(kData + "reference.safetensors");
    const Tensor &x = ref.tensors.at("x"), &t = ref.tensors.at("t"), &ids = ref.tensors.at("ids");
    struct Case {
        const char* name;
        int64_t modules;
        std::set<LoraKind> kinds;
    };
    const Case cases[] = {
        {"ia3", 9, {LoraKind::IA3}},     {"oft", 13, {LoraKind::OFT}},     {"oft_plain", 13, {LoraKind::OFT}},
        {"boft", 6, {LoraKind::BOFT}},   {"glora", 13, {LoraKind::GLoRA}}, {"full", 8, {LoraKind::Full}},
        {"norm", 16, {LoraKind::LoRA, LoraKind::Norm}},
    };
    StableDiffusionModel m = load_stable_diffusion(kEmoji);
    widen(*m.unet);  // LyCORIS computed on f32 modules: so does this merge
    widen(*m.te1.model);
    auto forward = [&] {
        NoGradGuard ng;
        return unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
    };
    const Tensor base = forward();
    const float tol = 2e-4f;  // f32 products in another order, 16 px latents, |eps| ~ 4
    for (const Case& c : cases) {
        SCOPED_TRACE(c.name);
        const LoraFile lf = load_lora(kData + c.name + ".safetensors");
        EXPECT_EQ(lf.metadata.at("ss_network_module"), "lycoris.kohya");
        std::set<LoraKind> kinds;
        int64_t on_input = 0, rescaled = 0, biases = 0;
        for (const auto& mod : lf.modules) {
            kinds.insert(mod.kind);
            on_input += mod.kind == LoraKind::IA3 && mod.t.at("on_input").item() != 0;
            rescaled += mod.t.count("rescale") > 0;
            biases += mod.bias_delta() != nullptr;
        }
        EXPECT_EQ(kinds, c.kinds);
        EXPECT_TRUE(lf.ignored.empty()) << lf.ignored.front();
        if (std::string(c.name) == "ia3") EXPECT_EQ(on_input, 3);  // ff.net.2, mlp.fc2, conv_out scale their inputs
        if (std::string(c.name) == "oft" || std::string(c.name) == "boft") EXPECT_EQ(rescaled, c.modules);
        if (std::string(c.name) == "full") EXPECT_EQ(biases, 8);
        if (std::string(c.name) == "norm") EXPECT_EQ(biases, 3);  // the two GroupNorms and the LayerNorm
        EXPECT_LT(largest_diff(base, ref.tensors.at(std::string(c.name) + ".base")), tol);
        LoraMerge merge;
        const LoraApplyReport r = merge.apply(m.modules(), lf, 0.7f);
        EXPECT_EQ(r.matched, c.modules);
        EXPECT_EQ(r.modules, c.modules);
        EXPECT_TRUE(r.warnings.empty()) << r.warnings.front();
        const Tensor merged = forward();
        EXPECT_GT(largest_diff(merged, base), 100 * tol);  // the adapters' change is well above the tolerance
        EXPECT_LT(largest_diff(merged, ref.tensors.at(std::string(c.name) + ".merged")), tol);
        merge.restore();
        EXPECT_EQ(largest_diff(forward(), base), 0.0f);  // weights and biases back, bit for bit
    }
}

// The old GLoRA layout (a1 [r, in], a2 [in, r], b1 [r, in], b2 [out, r]; W a2 a1 + b2 b1) is the current one with
// the names swapped: the same file in both spellings merges to the same weights.
TEST(LycorisAlgos, GloraOldLayoutIsTheCurrentOneRenamed) {
    const WeightFile w = load_weights(kData + "glora.safetensors");
    std::vector<std::pair<std::string, Tensor>> cur, old;
    std::set<std::string> linear;
    for (const auto& [k, v] : w.tensors)
        if (k.size() > 10 && k.compare(k.size() - 10, 10, ".a1.weight") == 0 && v.dim() == 2)
            linear.insert(k.substr(0, k.size() - 10));
    ASSERT_EQ(linear.size(), 8u);  // the Linear layers (the convolutions' a1 is [in, r, 1, 1])
    for (const auto& [k, v] : w.tensors) {
        const std::string mod = k.substr(0, k.find('.'));
        if (!linear.count(mod)) continue;
        cur.push_back({k, v});
        std::string ok = k;
        for (auto [a, b] : {std::pair{".a1.", ".a2."}, {".a2.", ".a1."}, {".b1.", ".b2."}, {".b2.", ".b1."}}) {
            const size_t at = k.find(a);
            if (at != std::string::npos) { ok = k.substr(0, at) + b + k.substr(at + 4); break; }
        }
        old.push_back({ok, v});
    }
    Dir d;
    const LoraFile fc = load_lora(d.file("cur.safetensors", cur)), fo = load_lora(d.file("old.safetensors", old));
    for (const LoraFile* f : {&fc, &fo})
        for (const auto& mod : f->modules) EXPECT_EQ(mod.rank(), 4) << mod.name;  // either layout's own rank
    auto weights_after = [&](const LoraFile& f) {
        StableDiffusionModel m = load_stable_diffusion(kEmoji);
        widen(*m.unet);  // f32 sums (f16 weights would round the two product orders apart by an ulp)
        widen(*m.te1.model);
        LoraMerge merge;
        EXPECT_EQ(merge.apply(m.modules(), f, 0.8f).matched, 8);
        std::map<std::string, Tensor> out;
        for (const auto& [name, mod] : m.modules())
            if (mod) for_each_param(*mod, [&](const std::string& n, Param& p) {
                    if (p.matrix && p.value.defined()) out[name + "." + n] = p.value.f32().contiguous();
                });
        return out;
    };
    const auto a = weights_after(fc), b = weights_after(fo);
    StableDiffusionModel base = load_stable_diffusion(kEmoji);
    int changed = 0;
    for (const auto& [name, mod] : base.modules())
        if (mod) for_each_param(*mod, [&](const std::string& n, Param& p) {
                if (!p.matrix || !p.value.defined()) return;
                const std::string k = name + "." + n;
                EXPECT_LT(largest_diff(a.at(k), b.at(k)), 2e-6f) << k;
                changed += largest_diff(a.at(k), p.value) > 1e-3f;
            });
    EXPECT_EQ(changed, 8);
}

// One Linear [2, 2] (no bias) and one LayerNorm, for hand-computed cases.
struct Tiny : Module {
    Linear proj{2, 2, false};
    Linear ff{4, 2};
    LayerNorm norm{2};
    Tiny() {
        proj.weight.value = T({1, 2, 3, 4}, {2, 2});
        ff.weight.value = T({1, 0, 2, 0, 0, 1, 0, 3}, {2, 4});
        ff.bias.value = T({0.5f, -0.5f}, {2});
        norm.weight.value = T({1, 1}, {2});
        norm.bias.value = T({0, 0}, {2});
    }
    void visit(ParamVisitor& v) override { v("proj", proj); v("ff", ff); v("norm", norm); }
    LoraComponents comps() { return {{"unet", this}}; }
};

std::vector<float> vals(const Param& p) { return p.value.to_vector(); }

TEST(LycorisAlgos, HandComputedOftIa3NormAndBias) {
    Dir d;
    // OFT, one 2x2 block: Q = [[0, q], [-q, 0]] with q = (B - B^T)[0][1] = 0.5 - (-0.25) = 0.75 is a rotation,
    // R = (I + Q)(I - Q)^-1 = [[c, s], [-s, c]] with c = (1 - q^2) / (1 + q^2), s = 2q / (1 + q^2); W' = R^T W.
    {
        Tiny m;
        const std::string f = d.file("oft.safetensors", {{"lora_unet_proj.oft_blocks", T({0, 0.5f, -0.25f, 0}, {1, 2, 2})}});
        LoraMerge merge;
        merge.apply(m.comps(), load_lora(f), 1.0f);
        const double q = 0.75, c = (1 - q * q) / (1 + q * q), s = 2 * q / (1 + q * q);
        // R^T = [[c, -s], [s, c]]: row 0' = c * row0 - s * row1, row 1' = s * row0 + c * row1
        const std::vector<double> want = {c * 1 - s * 3, c * 2 - s * 4, s * 1 + c * 3, s * 2 + c * 4};
        const auto got = vals(m.proj.weight);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
        // at strength 0.5 the block is 0.5 R + 0.5 I
        Tiny h;
        LoraMerge half;
        half.apply(h.comps(), load_lora(f), 0.5f);
        const std::vector<double> want_h = {0.5 * (want[0] + 1), 0.5 * (want[1] + 2), 0.5 * (want[2] + 3),
                                            0.5 * (want[3] + 4)};
        const auto got_h = vals(h.proj.weight);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(got_h[i], want_h[i], 1e-6) << i;
    }
    // OFT with a constraint: alpha * out = 0.1 * 2 = 0.2 < |Q| = sqrt(2) * 0.75, so Q is scaled to norm 0.2
    // (q = 0.2 / sqrt(2)), and with a rescale per output row.
    {
        Tiny m;
        const std::string f = d.file("oftc.safetensors", {{"lora_unet_proj.oft_blocks", T({0, 0.5f, -0.25f, 0}, {1, 2, 2})},
                                                         {"lora_unet_proj.alpha", T({0.1f}, {})},
                                                         {"lora_unet_proj.rescale", T({2, 0.5f}, {2, 1})}});
        LoraMerge merge;
        merge.apply(m.comps(), load_lora(f), 1.0f);
        const double q = 0.2 / std::sqrt(2.0) * (0.75 / (0.75 + 1e-8 / std::sqrt(2.0))), c = (1 - q * q) / (1 + q * q),
                     s = 2 * q / (1 + q * q);
        const std::vector<double> want = {2 * (c * 1 - s * 3), 2 * (c * 2 - s * 4), 0.5 * (s * 1 + c * 3),
                                          0.5 * (s * 2 + c * 4)};
        const auto got = vals(m.proj.weight);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
    }
    // IA3 on the output rows of proj and on the input channels of ff; a norm diff; a bias diff (diff_b) beside
    // a full diff.
    {
        Tiny m;
        const std::string f = d.file(
            "mix.safetensors",
            {{"lora_unet_proj.weight", T({0.5f, -1}, {2})}, {"lora_unet_proj.on_input", T({0}, {})},
             {"lora_unet_ff.weight", T({1, 2, 3, 4}, {4})}, {"lora_unet_ff.on_input", T({1}, {})},
             {"lora_unet_norm.w_norm", T({0.25f, -0.5f}, {2})}, {"lora_unet_norm.b_norm", T({1, 2}, {2})}});
        LoraMerge merge;
        const auto r = merge.apply(m.comps(), load_lora(f), 2.0f);
        EXPECT_EQ(r.matched, 3);
        // proj: W + 2 * W * w per row: row 0 * (1 + 1), row 1 * (1 - 2)
        EXPECT_EQ(vals(m.proj.weight), (std::vector<float>{2, 4, -3, -4}));
        // ff: column j * (1 + 2 * w[j])
        EXPECT_EQ(vals(m.ff.weight), (std::vector<float>{3, 0, 14, 0, 0, 5, 0, 27}));
        EXPECT_EQ(vals(m.ff.bias), (std::vector<float>{0.5f, -0.5f}));
        EXPECT_EQ(vals(m.norm.weight), (std::vector<float>{1.5f, 0}));
        EXPECT_EQ(vals(m.norm.bias), (std::vector<float>{2, 4}));
        merge.restore();
        EXPECT_EQ(vals(m.proj.weight), (std::vector<float>{1, 2, 3, 4}));
        EXPECT_EQ(vals(m.norm.bias), (std::vector<float>{0, 0}));
    }
    {
        Tiny m;
        const std::string f = d.file("full.safetensors", {{"lora_unet_ff.diff", T({1, 1, 1, 1, 1, 1, 1, 1}, {2, 4})},
                                                         {"lora_unet_ff.diff_b", T({1, -1}, {2})},
                                                         {"lora_unet_proj.diff_b", T({3, 3}, {2})}});
        LoraMerge merge;
        const auto r = merge.apply(m.comps(), load_lora(f), 0.5f);
        EXPECT_EQ(vals(m.ff.weight), (std::vector<float>{1.5f, 0.5f, 2.5f, 0.5f, 0.5f, 1.5f, 0.5f, 3.5f}));
        EXPECT_EQ(vals(m.ff.bias), (std::vector<float>{1, -1}));
        ASSERT_EQ(r.warnings.size(), 1u);  // proj has no bias: its diff_b is reported, not applied
        EXPECT_THAT(r.warnings[0], HasSubstr("module lora_unet_proj has a bias delta but the unet's layer 'proj' has no bias"));
        EXPECT_EQ(vals(m.proj.weight), (std::vector<float>{1, 2, 3, 4}));
    }
}

TEST(LycorisAlgos, BoftButterflyByHand) {
    // BOFT on 4 rows, blocks of 2, two stages. Stage 0 mixes rows (0, 1) and (2, 3); stage 1 (k = 2) pairs rows
    // (0, 2) and (1, 3). Each block a rotation by the Cayley transform of q; W' = R_stage1 (R_stage0 W).
    Dir d;
    struct Four : Module {
        Linear l{1, 4, false};
        Four() { l.weight.value = T({1, 2, 3, 4}, {4, 1}); }
        void visit(ParamVisitor& v) override { v("l", l); }
    } m;
    // blocks[stage][block] = [[0, q], [0, 0]] -> Q = [[0, q], [-q, 0]]
    const float q[2][2] = {{0.5f, 0.25f}, {1.0f, -0.5f}};
    std::vector<float> b;
    for (int s = 0; s < 2; ++s)
        for (int k = 0; k < 2; ++k) b.insert(b.end(), {0, q[s][k], 0, 0});
    const std::string f = d.file("boft.safetensors", {{"lora_unet_l.oft_blocks", T(b, {2, 2, 2, 2})}});
    LoraMerge merge;
    merge.apply({{"unet", &m}}, load_lora(f), 1.0f);
    auto rot = [](double qq, double x, double y, double& ox, double& oy) {  // R = [[c, s], [-s, c]], new = R [x, y]
        const double c = (1 - qq * qq) / (1 + qq * qq), s = 2 * qq / (1 + qq * qq);
        ox = c * x + s * y;
        oy = -s * x + c * y;
    };
    double w[4] = {1, 2, 3, 4}, v[4];
    rot(q[0][0], w[0], w[1], v[0], v[1]);
    rot(q[0][1], w[2], w[3], v[2], v[3]);
    rot(q[1][0], v[0], v[2], w[0], w[2]);
    rot(q[1][1], v[1], v[3], w[1], w[3]);
    const auto got = vals(m.l.weight);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(got[i], w[i], 1e-5) << i;
}

TEST(LycorisAlgos, FilesThatDoNotFitAreRefusedBeforeAnythingChanges) {
    Dir d;
    auto load_err = [&](const std::vector<std::pair<std::string, Tensor>>& t) {
        return error_of([&] { load_lora(d.file("bad.safetensors", t)); });
    };
    EXPECT_THAT(load_err({{"lora_unet_proj.oft_blocks", T({0, 0, 0, 0, 0, 0}, {1, 2, 3})}}),
                HasSubstr("oft_blocks [1, 2, 3] is not [blocks, b, b]"));
    EXPECT_THAT(load_err({{"lora_unet_proj.oft_blocks", Tensor::zeros({1, 600, 600})}}),
                HasSubstr("with b <= 512"));
    EXPECT_THAT(load_err({{"lora_unet_proj.oft_blocks", Tensor::zeros({2, 1, 3, 3})}}),
                HasSubstr("is not [stages <= 32, blocks, b, b] with b even"));
    EXPECT_THAT(load_err({{"lora_unet_proj.oft_blocks", Tensor::zeros({1, 2, 2})},
                          {"lora_unet_proj.rescale", Tensor::zeros({3, 1})}}),
                HasSubstr("rescale [3, 1] does not fit oft_blocks [1, 2, 2]"));
    EXPECT_THAT(load_err({{"lora_unet_proj.rescale", Tensor::zeros({2, 1})}}), HasSubstr("and no weights"));
    EXPECT_THAT(load_err({{"lora_unet_proj.a1.weight", Tensor::zeros({2, 1})},
                          {"lora_unet_proj.a2.weight", Tensor::zeros({1, 2})},
                          {"lora_unet_proj.b1.weight", Tensor::zeros({2, 1})}}),
                HasSubstr("module lora_unet_proj (GLoRA) has no 'b2' tensor"));
    EXPECT_THAT(load_err({{"lora_unet_proj.weight", Tensor::zeros({2, 2})}, {"lora_unet_proj.on_input", T({0}, {})}}),
                HasSubstr("weight [2, 2] is not a vector"));
    // a plain "<module>.weight" without on_input is no IA3 (a full checkpoint given as a LoRA, say)
    EXPECT_THAT(load_err({{"model.proj.weight", Tensor::zeros({2, 2})}}), HasSubstr("holds no LoRA / LyCORIS weights"));
    EXPECT_THAT(load_err({{"lora_unet_proj.oft_blocks", Tensor::zeros({1, 2, 2})},
                          {"lora_unet_proj.dora_scale", Tensor::zeros({1, 2})}}),
                HasSubstr("is OFT with a DoRA magnitude"));
    EXPECT_THAT(load_err({{"lora_unet_norm.w_norm", Tensor::zeros({2})}, {"lora_unet_norm.b_norm", Tensor::zeros({3})}}),
                HasSubstr("b_norm [3] does not fit w_norm [2]"));

    // Shapes against the layers: each file has one module that fits and one that does not; nothing changes.
    auto apply_err = [&](const std::vector<std::pair<std::string, Tensor>>& t) {
        Tiny m;
        const LoraFile f = load_lora(d.file("bad.safetensors", t));
        LoraMerge merge;
        const std::string e = error_of([&] { merge.apply(m.comps(), f, 1.0f); });
        EXPECT_EQ(vals(m.proj.weight), (std::vector<float>{1, 2, 3, 4}));
        EXPECT_EQ(vals(m.ff.weight), (std::vector<float>{1, 0, 2, 0, 0, 1, 0, 3}));
        EXPECT_EQ(vals(m.norm.weight), (std::vector<float>{1, 1}));
        EXPECT_TRUE(merge.empty());
        return e;
    };
    const std::pair<std::string, Tensor> good = {"lora_unet_proj.diff", Tensor::full({2, 2}, 1.0f)};
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.weight", T({1, 2, 3}, {3})}, {"lora_unet_ff.on_input", T({1}, {})}}),
                HasSubstr("module lora_unet_ff (IA3) makes a scale of 3 input channels but the model's weight is [2, 4]"));
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.oft_blocks", Tensor::zeros({3, 2, 2})}}),
                HasSubstr("(OFT) makes 3 blocks of 2 rows but the model's weight is [2, 4]"));
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.oft_blocks", Tensor::zeros({2, 1, 2, 2})}}),
                HasSubstr("(BOFT) makes 2 butterfly stages of 2-row blocks (2 rows are not a multiple of 4)"));
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.a1.weight", Tensor::zeros({3, 1})},
                           {"lora_unet_ff.a2.weight", Tensor::zeros({1, 3})}, {"lora_unet_ff.b1.weight", Tensor::zeros({2, 1})},
                           {"lora_unet_ff.b2.weight", Tensor::zeros({1, 4})}}),
                HasSubstr("module lora_unet_ff (GLoRA) makes a1 [3, 1], a2 [1, 3]"));
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.w_norm", Tensor::zeros({2})}}),
                HasSubstr("module lora_unet_ff (norm diff) makes [2] but the model's weight is [2, 4]"));
    EXPECT_THAT(apply_err({good, {"lora_unet_norm.lora_down.weight", Tensor::zeros({1, 2})},
                           {"lora_unet_norm.lora_up.weight", Tensor::zeros({2, 1})}}),
                HasSubstr("module lora_unet_norm makes a [2, 2] delta but the unet's layer 'norm' is [2]"));
    EXPECT_THAT(apply_err({good, {"lora_unet_norm.oft_blocks", Tensor::zeros({1, 2, 2})}}),
                HasSubstr("module lora_unet_norm (OFT) targets the vector [2], not a weight matrix"));
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.diff_b", Tensor::zeros({3})}}),
                HasSubstr("module lora_unet_ff: bias delta [3] does not fit the unet's layer 'ff' [2, 4]"));
    // Values that make no delta fail while merging, after a module before them was merged: that one is undone too
    // (fuzz_lora's first finding, fuzz/crashes/lora/: an OFT block of NaNs after a good module)
    EXPECT_THAT(apply_err({{"lora_unet_ff.diff", Tensor::full({2, 4}, 1.0f)},
                           {"lora_unet_proj.oft_blocks", T({0, NAN, 0, 0}, {1, 2, 2})}}),
                HasSubstr("cayley: block 0 of [1, 2, 2] has a singular or non-finite I - Q"));
    // LoKr used to be checked only while merging (after the modules before it had changed)
    EXPECT_THAT(apply_err({good, {"lora_unet_ff.lokr_w1", Tensor::zeros({2, 2})}, {"lora_unet_ff.lokr_w2", Tensor::zeros({1, 3})}}),
                HasSubstr("module lora_unet_ff (LoKr) makes kron([2, 2], [1, 3]) but the model's weight is [2, 4]"));
}

}  // namespace
}  // namespace nuance
