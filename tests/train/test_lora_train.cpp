// LoRA training (src/train/lora_network.h, lora_train.h): the --targets grammar, kohya's module names against the
// golden kohya file's module list, gradchecks of the LoRA-wrapped linear and conv, a step with lr 0 that leaves the
// base model's output unchanged, a short run on the built-in model whose loss falls and whose saved file nuance's
// LoRA loader reads back to the trained forward, bit-exact --resume, the CLI, and the error paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <set>

#include "../test_util.h"
#include "adapters/lora.h"
#include "ops/matmul.h"
#include "models/model_family.h"
#include "../backends/cpu/quantized_test_util.h"
#include "backends/backend.h"
#include "core/quantized_weight.h"
#include "pipelines/generate.h"
#include "io/weights.h"
#include "io/gguf_quantize.h"
#include "autograd/autograd.h"
#include "core/rng.h"
#include "data_test_util.h"
#include "emoji_test_data.h"
#include "eval/golden_case.h"
#include "io/safetensors.h"
#include "models/default_model.h"
#include "models/random_model.h"
#include "models/sd/stable_diffusion.h"
#include "ops/elementwise.h"
#include "core/mt19937.h"
#include "ops/shape_ops.h"
#include "samplers/schedule.h"
#include "text/clip_tokenizer.h"
#include "train/checkpoint.h"
#include "train/dataset.h"
#include "train/trainer.h"
#include "train/lora_network.h"
#include "train/lora_train.h"
#include "train/train_options.h"
#include "train/model_graph.h"
#include "train/optim.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using test::error_of;

const std::string kEmoji = (fs::path(NUANCE_TEST_DATA) / ".." / ".." / "models" / kDefaultModelName).string();

Tensor randn(const Shape& s, uint64_t seed, float scale = 1.0f) {
    return mul(make_rng(RngKind::Cpu, seed)->randn(s), scale);
}

float largest_diff(const Tensor& a, const Tensor& b) {
    const Tensor d = (a.f32() - b.f32()).contiguous();
    float m = 0;
    for (int64_t i = 0; i < d.numel(); ++i) m = std::max(m, std::fabs(d.data<float>()[i]));
    return m;
}
float largest_abs(const Tensor& a) { return largest_diff(a, mul(a, 0.0f)); }

void widen(Module& m) {
    for_each_param(m, [](const std::string&, Param& p) {
        if (p.value.defined() && p.value.dtype() != DType::F32) p.value = p.value.f32().contiguous();
    });
}

// ---- --targets ----

TEST(LoraTargets, PartsAndErrors) {
    const LoraTargets a = parse_lora_targets("attn");
    EXPECT_TRUE(a.attn && !a.ff && !a.all_linear && !a.conv);
    const LoraTargets b = parse_lora_targets("attn+ff");
    EXPECT_TRUE(b.attn && b.ff && !b.conv);
    const LoraTargets c = parse_lora_targets("all-linear+conv");
    EXPECT_TRUE(c.all_linear && c.conv && !c.attn);
    const LoraTargets d = parse_lora_targets("+conv");  // kohya's default plus LoCon
    EXPECT_TRUE(d.all_linear && d.conv);
    EXPECT_THAT(error_of([] { parse_lora_targets("attn+mlp"); }), HasSubstr("unknown part 'mlp'"));
    EXPECT_THAT(error_of([] { parse_lora_targets("attn++ff"); }), HasSubstr("an empty part"));
    EXPECT_THAT(error_of([] { parse_lora_targets(""); }), HasSubstr("--targets is empty"));
    EXPECT_THAT(error_of([] { parse_lora_targets("+"); }), HasSubstr("empty part"));
}

// ---- kohya names: the golden kohya SD1.5 file lists every module kohya (LoRA + LoCon) puts on the tiny SD1.5 UNet
// and CLIP-L; all-linear+conv with the text encoder must make exactly those names with those factor shapes ----

struct TinySd15 {
    std::unique_ptr<UNet2DConditionModel> unet;
    std::unique_ptr<ClipTextModel> te;
    TinySd15() {
        const std::string g = std::string(NUANCE_TEST_DATA) + "/golden";
        const GoldenCase lora = GoldenCase::load(g + "/lora");
        const GoldenCase uc = GoldenCase::load(g + "/unet_sd15");
        const auto models = uc.models();
        const WeightFile wf = load_safetensors(models.at(0).second);
        UNetConfig cfg = UNetConfig::detect(wf.tensors);
        cfg.apply_json(uc.model_config(models[0].first));
        unet = std::make_unique<UNet2DConditionModel>(cfg);
        load_module(*unet, wf.tensors, lora.load_options(models[0].second));
        const GoldenCase cc = GoldenCase::load(g + "/clip_text");
        const std::string path = cc.path("clip_l.safetensors");
        const WeightFile w = load_safetensors(path);
        ClipTextConfig tc = ClipTextConfig::detect(w.tensors);
        tc.apply_hf_config(cc.model_config("clip_l"));
        te = std::make_unique<ClipTextModel>(tc);
        load_module(*te, w.tensors, lora.load_options(path));
    }
};

TEST(LoraNames, AllLinearPlusConvIsKohyasModuleSetWithKohyasNames) {
    TinySd15 m;
    LoraConfig cfg;
    cfg.rank = 3;
    cfg.alpha = 1.5;
    cfg.targets = parse_lora_targets("all-linear+conv");
    LoraNetwork net(*m.unet, m.te.get(), cfg, 1);
    std::ifstream f(std::string(NUANCE_TEST_DATA) + "/golden/lora/lora_index.json");
    const nlohmann::json index = nlohmann::json::parse(f);
    std::map<std::string, nlohmann::json> golden;  // file module -> entry
    for (const auto& e : index.at("lora_sd15_kohya.safetensors")) golden[e.at("file_module")] = e;
    std::set<std::string> ours;
    for (const auto& a : net.adapters()) {
        ours.insert(a->name);
        auto it = golden.find(a->name);
        ASSERT_NE(it, golden.end()) << a->name << " is not in kohya's file";
        const nlohmann::json& g = it->second;
        EXPECT_EQ(g.at("diffusers_module").get<std::string>(), a->module) << a->name;
        EXPECT_EQ(g.at("component").get<std::string>(), a->text_encoder ? "text_encoder" : "unet") << a->name;
        // kohya's factor shapes with the rank replaced: down [r, in(, kh, kw)], up [out, r(, 1, 1)]
        Shape gd = g.at("down_shape").get<Shape>(), gu = g.at("up_shape").get<Shape>();
        gd[0] = cfg.rank;
        gu[1] = cfg.rank;
        EXPECT_EQ(a->down.value.shape(), gd) << a->name;
        EXPECT_EQ(a->up.value.shape(), gu) << a->name;
    }
    for (const auto& [name, e] : golden) EXPECT_TRUE(ours.count(name)) << "kohya adapts " << name << ", we do not";
    EXPECT_EQ(ours.size(), golden.size());

    // The smaller sets are subsets with the expected members.
    cfg.targets = parse_lora_targets("attn");
    LoraNetwork attn(*m.unet, nullptr, cfg, 1);
    for (const auto& a : attn.adapters()) {
        EXPECT_TRUE(golden.count(a->name)) << a->name;
        EXPECT_THAT(a->module, ::testing::AnyOf(::testing::EndsWith("to_q"), ::testing::EndsWith("to_k"),
                                                ::testing::EndsWith("to_v"), ::testing::EndsWith("to_out.0")));
    }
    cfg.targets = parse_lora_targets("attn+ff");
    LoraNetwork ff(*m.unet, nullptr, cfg, 1);
    EXPECT_GT(ff.adapters().size(), attn.adapters().size());
}

TEST(LoraNames, TheSavedFileLoadsThroughNuancesLoaderAndMatchesEveryLayer) {
    TinySd15 m;
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1;
    cfg.targets = parse_lora_targets("all-linear+conv");
    LoraNetwork net(*m.unet, m.te.get(), cfg, 1);
    for (auto& a : net.adapters()) a->up.value = randn(a->up.value.shape(), 3, 0.1f);  // non-zero deltas
    test::TempDir dir("lora_names");
    const std::string path = dir / "tiny.safetensors";
    net.save_kohya(path, {{"ss_network_dim", "2"}});
    const LoraFile lf = load_lora(path);
    EXPECT_EQ(lf.modules.size(), net.adapters().size());
    EXPECT_EQ(lf.metadata.at("ss_network_dim"), "2");
    LoraMerge merge;
    const LoraApplyReport r = merge.apply({{"text_encoder", m.te.get()}, {"unet", m.unet.get()}}, lf, 1.0f);
    EXPECT_EQ(r.matched, (int64_t)net.adapters().size());
    EXPECT_TRUE(r.unmatched.empty());
    for (const auto& mod : lf.modules) EXPECT_DOUBLE_EQ(mod.scale(), 0.5) << mod.name;  // alpha 1 / rank 2
}

// kohya's conv_dim / conv_alpha: the 3x3 convolutions' adapters take their own rank and alpha (the file's per-module
// alpha says so), the linears and 1x1 convs keep --rank / --alpha; nuance's loader reads each module's scale back,
// and the merged model computes what the bound adapters compute.
TEST(LoraNames, ConvRankAndAlphaSizeTheThreeByThreeAdapters) {
    TinySd15 m;
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.alpha = 2;
    cfg.conv_rank = 2;
    cfg.conv_alpha = 3;
    cfg.targets = parse_lora_targets("all-linear+conv");
    LoraNetwork net(*m.unet, nullptr, cfg, 1);
    int64_t spatial = 0, other = 0;
    for (auto& a : net.adapters()) {
        const Shape& s = a->base->shape;
        const bool k3 = s.size() == 4 && (s[2] > 1 || s[3] > 1);
        spatial += k3;
        other += !k3;
        EXPECT_EQ(a->down.value.size(0), k3 ? 2 : 4) << a->name;
        EXPECT_EQ(a->up.value.size(1), k3 ? 2 : 4) << a->name;
        EXPECT_DOUBLE_EQ(a->scale(), k3 ? 1.5 : 0.5) << a->name;
        a->up.value = randn(a->up.value.shape(), 3, 0.1f);
    }
    EXPECT_GT(spatial, 0);
    EXPECT_GT(other, 0);
    test::TempDir dir("lora_convdim");
    const std::string path = dir / "convdim.safetensors";
    net.save_kohya(path, {});
    const LoraFile lf = load_lora(path);
    for (const auto& mod : lf.modules) {
        const bool k3 = mod.name.find("conv1") != std::string::npos || mod.name.find("conv2") != std::string::npos ||
                        mod.name.find("samplers_0_conv") != std::string::npos;
        EXPECT_DOUBLE_EQ(mod.scale(), k3 ? 1.5 : 0.5) << mod.name;
    }
    // without conv_alpha: the linear adapters' scale (alpha / rank) carries over
    cfg.conv_alpha = 0;
    LoraNetwork same_scale(*m.unet, nullptr, cfg, 1);
    for (auto& a : same_scale.adapters()) {
        EXPECT_DOUBLE_EQ(a->scale(), 0.5) << a->name;
        EXPECT_DOUBLE_EQ(a->alpha, a->rank == 2 ? 1.0 : 2.0) << a->name;  // conv rank 2 * alpha 2 / rank 4
    }

    // the forward with the adapters bound = the model with the file merged
    widen(*m.unet);
    const Tensor x = randn({1, m.unet->config().in_channels, 8, 8}, 4), t = Tensor::from_vector({300.0f}, {1});
    const Tensor ctx = randn({1, 77, m.unet->config().cross_attention_dim}, 5);
    Tensor bound;
    {
        NoGradGuard ng;
        LayerAdapters::Bind b(net);
        bound = unet_forward(*m.unet, Var(x), t, Var(ctx)).value();
    }
    LoraMerge merge;
    const LoraApplyReport r = merge.apply({{"unet", m.unet.get()}}, lf, 1.0f);
    EXPECT_EQ(r.matched, (int64_t)net.adapters().size());
    Tensor merged;
    {
        NoGradGuard ng;
        merged = unet_forward(*m.unet, Var(x), t, Var(ctx)).value();
    }
    EXPECT_LT(largest_diff(merged, bound), 1e-4f * std::max(1.0f, largest_abs(bound)));

    cfg.targets = parse_lora_targets("all-linear");
    EXPECT_THAT(error_of([&] { LoraNetwork bad(*m.unet, nullptr, cfg, 1); }), HasSubstr("(add +conv)"));
    cfg.targets = parse_lora_targets("all-linear+conv");
    cfg.conv_rank = kMaxLoraRank + 1;
    EXPECT_THAT(error_of([&] { LoraNetwork bad(*m.unet, nullptr, cfg, 1); }), HasSubstr("--conv-rank must be in"));
    cfg.conv_rank = 2;
    cfg.conv_alpha = -1;
    EXPECT_THAT(error_of([&] { LoraNetwork bad(*m.unet, nullptr, cfg, 1); }), HasSubstr("--conv-alpha must be"));
}

// ---- gradients: the LoRA-wrapped layers against finite differences ----

using Fn = std::function<Var(const std::vector<Var>&)>;

TEST(LoraGradcheck, LinearAndConvWithAdapters) {
    // y = linear(x, W, b) + s * linear(linear(x, down), up): the forward(Linear) of an adapted layer.
    const float s = 0.75f;
    const Fn lin = [s](const std::vector<Var>& v) {
        return linear(v[0], v[1], v[2]) + linear(linear(v[0], v[3]), v[4]) * s;
    };
    GradcheckResult r = gradcheck(lin, {randn({2, 3, 5}, 1), randn({4, 5}, 2, 0.5f), randn({4}, 3),
                                        randn({2, 5}, 4, 0.5f), randn({4, 2}, 5, 0.5f)});
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_GT(r.checked, 0);
    // LoCon: down a 3x3 stride-2 conv with the layer's padding, up 1x1.
    const Conv2dParams p = Conv2dParams::same(1, 2);
    const Fn conv = [s, p](const std::vector<Var>& v) {
        return conv2d(v[0], v[1], v[2], p) + conv2d(conv2d(v[0], v[3], Var(), p), v[4], Var(), Conv2dParams{}) * s;
    };
    r = gradcheck(conv, {randn({1, 3, 6, 6}, 6), randn({4, 3, 3, 3}, 7, 0.5f), randn({4}, 8),
                         randn({2, 3, 3, 3}, 9, 0.5f), randn({4, 2, 1, 1}, 10, 0.5f)});
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_GT(r.checked, 0);
}

// A module with one Linear (in -> out) and one 3x3 conv (cin -> cout, stride, padding 1) named like UNet layers, so
// the target rules pick them.
template <int64_t In, int64_t Out, int64_t CIn, int64_t COut, int Stride>
struct NamedLayers : Module {
    Linear q{In, Out};
    Conv2d conv{CIn, COut, 3, Stride, 1};
    void visit(ParamVisitor& v) override {
        v("mid_block.attentions.0.transformer_blocks.0.attn1.to_q", q);
        v("down_blocks.0.resnets.0.conv1", conv);
    }
};
using TwoLayers = NamedLayers<5, 4, 3, 4, 2>;
// Their weights fit Q8_0 blocks (in * kh * kw a multiple of 32).
using QuantizableLayers = NamedLayers<64, 8, 32, 8, 1>;

TEST(LoraGradcheck, TheNetworkComputesThatFormulaAndItsGradients) {
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1.5;
    cfg.targets = parse_lora_targets("attn+conv");
    LoraNetwork net(m, nullptr, cfg, 4);
    ASSERT_EQ(net.adapters().size(), 2u);
    for (auto& a : net.adapters()) a->up.value = randn(a->up.value.shape(), 5, 0.5f);
    ParamGrads g;
    for_each_param(m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
    net.register_params(g);
    const Tensor x = randn({2, 3, 5}, 6), xi = randn({1, 3, 6, 6}, 7);
    Var y, yc;
    {
        ParamGrads::Bind b(g);
        LayerAdapters::Bind ba(net);
        y = apply(m.q, Var(x));
        yc = apply(m.conv, Var(xi));
        backward(sum(y) + sum(yc));
    }
    const LoraNetwork::Adapter& aq = *net.adapters()[0];
    const LoraNetwork::Adapter& ac = *net.adapters()[1];
    const float s = 0.75f;
    // the same formula on plain Vars, with its own gradients
    Var d(aq.down.value, true), u(aq.up.value, true), dc(ac.down.value, true), uc(ac.up.value, true);
    const Var ref = linear(Var(x), Var(m.q.weight.value), Var(m.q.bias.value)) + linear(linear(Var(x), d), u) * s;
    const Var refc = conv2d(Var(xi), Var(m.conv.weight.value), Var(m.conv.bias.value), m.conv.p) +
                     conv2d(conv2d(Var(xi), dc, Var(), m.conv.p), uc, Var(), Conv2dParams{}) * s;
    backward(sum(ref) + sum(refc));
    EXPECT_EQ(largest_diff(y.value(), ref.value()), 0.0f);
    EXPECT_EQ(largest_diff(yc.value(), refc.value()), 0.0f);
    EXPECT_LT(largest_diff(g.grad(aq.down), d.grad()), 1e-5f);
    EXPECT_LT(largest_diff(g.grad(aq.up), u.grad()), 1e-5f);
    EXPECT_LT(largest_diff(g.grad(ac.down), dc.grad()), 1e-5f);
    EXPECT_LT(largest_diff(g.grad(ac.up), uc.grad()), 1e-5f);
    // the base weights are frozen: no gradient
    EXPECT_FALSE(g.grad(m.q.weight).defined());
    EXPECT_FALSE(g.grad(m.conv.weight).defined());
}

// A Tucker core (LyCORIS' LoCon use_tucker) on a strided 3x3 conv: down 1x1 -> mid 3x3 (the layer's stride and
// padding) -> up 1x1; the network computes that, its gradients, and a delta(W) whose convolution is the same.
TEST(LoraGradcheck, TuckerCoreOnAStridedConv) {
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1.5;
    cfg.tucker = true;
    cfg.targets = parse_lora_targets("attn+conv");
    LoraNetwork net(m, nullptr, cfg, 4);
    ASSERT_EQ(net.adapters().size(), 2u);
    LoraNetwork::Adapter& ac = *net.adapters()[1];
    EXPECT_FALSE(net.adapters()[0]->mid.defined());  // the linear keeps plain factors
    ASSERT_TRUE(ac.mid.defined());
    ac.up.value = randn(ac.up.value.shape(), 5, 0.5f);
    ParamGrads g;
    for_each_param(m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
    net.register_params(g);
    const Tensor xi = randn({2, 3, 7, 7}, 7);
    Var yc;
    {
        ParamGrads::Bind b(g);
        LayerAdapters::Bind ba(net);
        yc = apply(m.conv, Var(xi));
        backward(sum(yc));
    }
    const float s = 0.75f;
    Var dc(ac.down.value, true), mc(ac.mid.value, true), uc(ac.up.value, true);
    const Var lx = conv2d(conv2d(Var(xi), dc, Var(), Conv2dParams{}), mc, Var(), m.conv.p);
    const Var refc = conv2d(Var(xi), Var(m.conv.weight.value), Var(m.conv.bias.value), m.conv.p) +
                     conv2d(lx, uc, Var(), Conv2dParams{}) * s;
    backward(sum(refc));
    EXPECT_LT(largest_diff(yc.value(), refc.value()), 1e-6f);
    EXPECT_LT(largest_diff(g.grad(ac.down), dc.grad()), 1e-5f);
    EXPECT_LT(largest_diff(g.grad(ac.mid), mc.grad()), 1e-5f);
    EXPECT_LT(largest_diff(g.grad(ac.up), uc.grad()), 1e-5f);
    NoGradGuard ng;
    const Tensor via_delta = conv2d(Var(xi), ac.weight_delta(), Var(), m.conv.p).value();
    const Tensor via_chain = conv2d(lx, Var(ac.up.value), Var(), Conv2dParams{}).value();
    EXPECT_LT(largest_diff(via_delta, via_chain), 1e-5f);
}

// kohya's dropouts on a plain LoRA (network, rank, module): the bound step's output is the formula with the masks,
// the masks are the hash of (seed, step, adapter, global sample, element) (the same for a rank holding rows 1..2 of
// a global batch as for the whole batch), drop the expected share, and vanish without a bound step.
TEST(LoraDropout, KohyaNetworkRankAndModuleDropoutsOnLoRA) {
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1.5;
    cfg.targets = parse_lora_targets("attn+conv");
    cfg.dropout = 0.25;
    cfg.rank_dropout = 0.5;
    LoraNetwork net(m, nullptr, cfg, 4);
    for (auto& a : net.adapters()) a->up.value = randn(a->up.value.shape(), 5, 0.5f);
    const LoraNetwork::Adapter& aq = *net.adapters()[0];
    const LoraNetwork::Adapter& ac = *net.adapters()[1];
    const Tensor x = randn({4, 3, 5}, 6), xi = randn({4, 3, 6, 6}, 7);
    auto forward = [&](const Tensor& xl, const Tensor& xc) {
        LayerAdapters::Bind ba(net);
        NoGradGuard ng;
        return std::make_pair(apply(m.q, Var(xl)).value(), apply(m.conv, Var(xc)).value());
    };
    const auto [plain_q, plain_c] = forward(x, xi);  // no step bound: the file's forward
    Tensor yq, yc;
    {
        const LoraNetwork::DropoutStep step(net, 77, 3, 0, 4);
        std::tie(yq, yc) = forward(x, xi);
    }
    // the formula: lx = down(x) * neuron mask / (1 - p) * rank mask, y = W x + b + scale / (1 - p_rank) * up(lx)
    auto expected = [&](const LoraNetwork::Adapter& a, const Tensor& lx_t, int64_t row0) {
        Tensor lx = lx_t.contiguous();
        const Shape& sh = lx.shape();
        const int64_t B = sh[0], per = lx.numel() / B, r = a.rank;
        const bool conv = sh.size() == 4;
        float* v = lx.data<float>();
        int64_t dropped = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < per; ++j) {
                const uint64_t g = (uint64_t)((row0 + b) * per + j);
                const int64_t ch = conv ? j / (sh[2] * sh[3]) : j % r;
                const bool keep_n = net.dropout_uniform(a, 3, g) >= 0.25;
                const bool keep_r = net.dropout_uniform(a, 2, (uint64_t)((row0 + b) * r + ch)) >= 0.5;
                v[b * per + j] = keep_n && keep_r ? v[b * per + j] / 0.75f : 0.0f;
                dropped += !(keep_n && keep_r);
            }
        return std::make_pair(lx, dropped);
    };
    {
        const LoraNetwork::DropoutStep step(net, 77, 3, 0, 4);  // dropout_uniform reads the bound step
        NoGradGuard ng;
        const float s = (float)(0.75 / 0.5);  // alpha / rank, times 1 / (1 - rank_dropout)
        auto [lq, dq] = expected(aq, linear(Var(x), Var(aq.down.value)).value(), 0);
        const Tensor ref_q = (linear(Var(x), Var(m.q.weight.value), Var(m.q.bias.value)) +
                              linear(Var(lq), Var(aq.up.value)) * s).value();
        EXPECT_LT(largest_diff(yq, ref_q), 1e-5f);
        auto [lc, dc] = expected(ac, conv2d(Var(xi), Var(ac.down.value), Var(), m.conv.p).value(), 0);
        const Tensor ref_c = (conv2d(Var(xi), Var(m.conv.weight.value), Var(m.conv.bias.value), m.conv.p) +
                              conv2d(Var(lc), Var(ac.up.value), Var(), Conv2dParams{}) * s).value();
        EXPECT_LT(largest_diff(yc, ref_c), 1e-5f);
        // about 1 - 0.75 * 0.5 = 62.5% of the values dropped (24 and 2 * 4 * 3 * 3 = 72 values)
        EXPECT_GT(dq + dc, 96 * 0.4);
        EXPECT_LT(dq + dc, 96 * 0.85);
        // another step, seed or adapter draws other numbers (and the same step the same ones)
        std::vector<double> step3(64), adapter_c(64);
        for (uint64_t i = 0; i < 64; ++i) step3[i] = net.dropout_uniform(aq, 3, i), adapter_c[i] = net.dropout_uniform(ac, 3, i);
        for (uint64_t i = 0; i < 64; ++i) EXPECT_EQ(net.dropout_uniform(aq, 3, i), step3[i]);
        int64_t same_adapter = 0;
        for (uint64_t i = 0; i < 64; ++i) same_adapter += adapter_c[i] == step3[i];
        EXPECT_EQ(same_adapter, 0);
        for (auto [seed, st] : {std::pair<uint64_t, int64_t>{77, 4}, {78, 3}}) {
            const LoraNetwork::DropoutStep other(net, seed, st, 0, 4);
            int64_t same = 0;
            double mean = 0;
            for (uint64_t i = 0; i < 64; ++i) {
                const double u = net.dropout_uniform(aq, 3, i);
                same += u == step3[i];
                mean += u / 64;
                EXPECT_TRUE(u >= 0 && u < 1) << u;
            }
            EXPECT_EQ(same, 0) << "seed " << seed << ", step " << st;
            EXPECT_NEAR(mean, 0.5, 0.15);  // uniform on [0, 1): 64 draws, sd 0.036
        }
    }
    EXPECT_GT(largest_diff(yq, plain_q), 1e-3f);
    // a data-parallel rank holding samples 1..2 of the same global batch draws the same masks for them
    {
        const LoraNetwork::DropoutStep step(net, 77, 3, 1, 2);
        const auto [yq12, yc12] = forward(x.slice(0, 1, 3).contiguous(), xi.slice(0, 1, 3).contiguous());
        EXPECT_LT(largest_diff(yq12, yq.slice(0, 1, 3).contiguous()), 1e-6f);
        EXPECT_LT(largest_diff(yc12, yc.slice(0, 1, 3).contiguous()), 1e-6f);
    }
    // unbound again: the file's forward
    EXPECT_EQ(largest_diff(forward(x, xi).first, plain_q), 0.0f);

    // module dropout: a dropped adapter adds nothing that step; about p of the (step, adapter)
    // pairs are dropped
    LoraConfig mc = cfg;
    mc.dropout = mc.rank_dropout = 0;
    mc.module_dropout = 0.3;
    LoraNetwork mnet(m, nullptr, mc, 4);
    for (auto& a : mnet.adapters()) a->up.value = randn(a->up.value.shape(), 5, 0.5f);
    int64_t dropped = 0, checked = 0;
    Tensor base_q;
    {
        NoGradGuard ng;
        base_q = linear(Var(x), Var(m.q.weight.value), Var(m.q.bias.value)).value();
    }
    for (int64_t st = 0; st < 200; ++st) {
        const LoraNetwork::DropoutStep step(mnet, 9, st, 0, 4);
        const bool d = mnet.module_dropped(*mnet.adapters()[0]);
        dropped += d;
        if (st < 20) {
            LayerAdapters::Bind ba(mnet);
            NoGradGuard ng;
            const Tensor y = apply(m.q, Var(x)).value();
            EXPECT_EQ(largest_diff(y, base_q) == 0.0f, d) << st;
            ++checked;
        }
    }
    EXPECT_EQ(checked, 20);
    EXPECT_GT(dropped, 200 * 0.2);
    EXPECT_LT(dropped, 200 * 0.4);
}

// LyCORIS' rank dropout on LoHa / LoKr (and DoRA's merged weight): rows of delta(W) are dropped, unscaled; the
// merged weight of a dropped row is the base row.
TEST(LoraDropout, LycorisRankDropoutDropsRowsOfTheDelta) {
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    for (LoraAlgo algo : {LoraAlgo::LoHa, LoraAlgo::LoKr}) {
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = 2;
        cfg.alpha = 2;
        cfg.targets = parse_lora_targets("attn+conv");
        cfg.rank_dropout = 0.5;
        LoraNetwork net(m, nullptr, cfg, 4);
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), 11, 0.5f);
        const LoraNetwork::DropoutStep step(net, 5, 2, 0, 2);
        LayerAdapters::Bind ba(net);
        NoGradGuard ng;
        for (auto& a : net.adapters()) {
            const Var w = a->conv ? net.weight(m.conv) : net.weight(m.q);
            ASSERT_TRUE(w.defined());
            const Tensor full = (param_var(*a->base) + a->weight_delta() * (float)a->scale()).value().contiguous();
            const Tensor got = w.value().contiguous(), base = a->base->value.contiguous();
            const int64_t out = got.size(0), cols = got.numel() / out;
            int64_t kept = 0;
            for (int64_t o = 0; o < out; ++o) {
                const bool keep = net.dropout_uniform(*a, 2, (uint64_t)o) >= 0.5;
                kept += keep;
                const Tensor& want = keep ? full : base;
                for (int64_t c = 0; c < cols; ++c)
                    ASSERT_NEAR(got.data<float>()[o * cols + c], want.data<float>()[o * cols + c], 1e-6f) << o;
            }
            RecordProperty(a->name + "_kept_rows", (int)kept);
        }
    }
}

TEST(LoraInit, DownIsKaimingUniformUpIsZero) {
    TwoLayers m;
    init_random(m, 3);
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.targets = parse_lora_targets("attn+conv");
    LoraNetwork net(m, nullptr, cfg, 9);
    for (const auto& a : net.adapters()) {
        const int64_t fan_in = a->down.value.numel() / a->down.value.size(0);
        const float bound = 1.0f / std::sqrt((float)fan_in);
        EXPECT_LE(largest_abs(a->down.value), bound) << a->name;
        EXPECT_GT(largest_abs(a->down.value), 0.5f * bound) << a->name;
        EXPECT_EQ(largest_abs(a->up.value), 0.0f) << a->name;
    }
    EXPECT_EQ(net.numel(), 4 * 5 + 4 * 4 + 4 * 3 * 9 + 4 * 4);
}

TEST(LoraNetworkErrors, BadRankAlphaAndEmptySelections) {
    TwoLayers m;
    init_random(m, 3);
    LoraConfig cfg;
    cfg.rank = 0;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("--rank must be in 1..1024"));
    cfg.rank = 4;
    cfg.alpha = std::nan("");
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("--alpha"));
    cfg.alpha = 4;
    cfg.targets = parse_lora_targets("ff");
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("selects no layer of the UNet"));
}

// ---- LyCORIS LoHa / LoKr (--network loha | lokr) ----

TEST(LycorisNetwork, FactorizationIsLyCORIS) {
    // LyCORIS' factorization(dim, factor), values from its own code
    using P = std::pair<int64_t, int64_t>;
    EXPECT_EQ(lokr_factorization(320, -1), P(16, 20));
    EXPECT_EQ(lokr_factorization(768, -1), P(24, 32));
    EXPECT_EQ(lokr_factorization(1280, -1), P(32, 40));
    EXPECT_EQ(lokr_factorization(96, -1), P(8, 12));
    EXPECT_EQ(lokr_factorization(36, -1), P(6, 6));
    EXPECT_EQ(lokr_factorization(127, -1), P(1, 127));  // a prime: w1 is one row / column
    EXPECT_EQ(lokr_factorization(1, -1), P(1, 1));
    EXPECT_EQ(lokr_factorization(128, 4), P(4, 32));
    EXPECT_EQ(lokr_factorization(64, 16), P(4, 16));  // ordered m <= n
    EXPECT_EQ(lokr_factorization(320, 7), P(5, 64));  // 7 does not divide: the largest m <= 7 on the way
    EXPECT_THAT(error_of([] { lokr_factorization(0, -1); }), HasSubstr("cannot factorize"));
    EXPECT_EQ(parse_lora_algo("locon"), LoraAlgo::LoRA);
    EXPECT_EQ(parse_lora_algo("loha"), LoraAlgo::LoHa);
    EXPECT_EQ(parse_lora_algo("lokr"), LoraAlgo::LoKr);
    EXPECT_EQ(parse_lora_algo("ia3"), LoraAlgo::IA3);
    EXPECT_EQ(parse_lora_algo("diag-oft"), LoraAlgo::OFT);
    EXPECT_EQ(parse_lora_algo("glora"), LoraAlgo::GLoRA);
    EXPECT_EQ(parse_lora_algo("boft"), LoraAlgo::BOFT);
    EXPECT_THAT(error_of([] { parse_lora_algo("dylora"); }), HasSubstr("expected lora, loha, lokr, ia3, oft, glora, boft or full"));
    // LyCORIS' power2factorization (values printed by lycoris 4.1.3's butterfly_factor)
    for (const auto& [dim, f, b, n] : std::vector<std::array<int64_t, 4>>{
             {96, 8, 6, 16}, {128, 2, 2, 64}, {128, 4, 4, 32}, {128, 8, 8, 16}, {512, 4, 4, 128}, {512, 8, 8, 64},
             {4, 2, 2, 2}, {4, 4, 4, 1}, {4, 8, 4, 1}, {96, -1, 96, 1}, {128, -1, 128, 1}, {160, 8, 0, 0}, {320, 8, 0, 0},
             {96, 2, 0, 0}, {40, 4, 0, 0}})
        EXPECT_EQ(boft_factorization(dim, f), std::make_pair(b, n)) << dim << " " << f;
}

// The golden LyCORIS files were written by LyCORIS' own LohaModule / LokrModule on the tiny SD1.5: a network with
// each module's rank, alpha, factor and decompose_both must make the same tensor names and shapes and scale.
TEST(LycorisNetwork, ShapesAndScalesAreLyCORISOnTheGoldenModules) {
    TinySd15 m;
    std::ifstream f(std::string(NUANCE_TEST_DATA) + "/golden/lora/lora_index.json");
    const nlohmann::json index = nlohmann::json::parse(f);
    int64_t compared = 0;
    for (const char* file : {"lycoris_loha_sd15.safetensors", "lycoris_lokr_sd15.safetensors"}) {
        for (const auto& e : index.at(file)) {
            if (e.value("full_matrix", false)) continue;  // LyCORIS' full_matrix switch: not a training option here
            LoraConfig cfg;
            cfg.algo = std::string(file).find("loha") != std::string::npos ? LoraAlgo::LoHa : LoraAlgo::LoKr;
            cfg.rank = e.at("rank").get<int64_t>();
            cfg.alpha = e.at("alpha").get<double>();
            cfg.factor = e.value("factor", (int64_t)-1);
            cfg.decompose_both = e.value("decompose_both", false);
            cfg.targets = parse_lora_targets("all-linear+conv");
            LoraNetwork net(*m.unet, m.te.get(), cfg, 1);
            const std::string name = e.at("file_module").get<std::string>();
            const LoraNetwork::Adapter* a = nullptr;
            for (const auto& x : net.adapters())
                if (x->name == name) a = x.get();
            ASSERT_NE(a, nullptr) << name;
            const auto tensors = a->tensors();
            ASSERT_EQ(tensors.size(), e.at("tensors").size()) << name;
            for (const auto& [key, p] : tensors) {
                ASSERT_TRUE(e.at("tensors").contains(key)) << name << " " << key;
                EXPECT_EQ(p->value.shape(), e.at("tensors").at(key).get<Shape>()) << name << " " << key;
            }
            EXPECT_DOUBLE_EQ(a->scale(), e.at("lycoris_scale").get<double>()) << name;
            ++compared;
        }
    }
    EXPECT_EQ(compared, 11);
}

TEST(LycorisNetwork, InitialisationAddsNothingAndFollowsLyCORIS) {
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.targets = parse_lora_targets("attn+conv");
    cfg.algo = LoraAlgo::LoHa;
    LoraNetwork loha(m, nullptr, cfg, 9);
    ASSERT_EQ(loha.adapters().size(), 2u);
    for (const auto& a : loha.adapters()) {
        EXPECT_EQ(largest_abs(a->w2_a.value), 0.0f) << a->name;  // LyCORIS: hada_w2_a = 0
        EXPECT_GT(largest_abs(a->w1_a.value), 0.05f) << a->name;
        EXPECT_LT(largest_abs(a->w1_a.value), 0.6f) << a->name;  // N(0, 0.1^2)
        EXPECT_GT(largest_abs(a->w1_b.value), 0.5f) << a->name;  // N(0, 1)
        EXPECT_FALSE(a->down.defined());
    }
    // q [4, 5]: w1_b [2, 5]; conv [4, 3, 3, 3]: w1_b [2, 27] (the kernel flattened)
    EXPECT_EQ(loha.adapters()[1]->w1_b.value.shape(), Shape({2, 27}));
    EXPECT_EQ(loha.numel(), 2 * (4 * 2 + 2 * 5) + 2 * (4 * 2 + 2 * 27));
    cfg.algo = LoraAlgo::LoKr;
    cfg.rank = 1;
    LoraNetwork lokr(m, nullptr, cfg, 9);
    const auto& q = *lokr.adapters()[0];  // [4, 5]: out (2, 2), in (1, 5); 1 < 5 / 2: w2 decomposed
    EXPECT_EQ(q.w1.value.shape(), Shape({2, 1}));
    EXPECT_EQ(q.w2_a.value.shape(), Shape({2, 1}));
    EXPECT_EQ(q.w2_b.value.shape(), Shape({1, 5}));
    EXPECT_EQ(largest_abs(q.w2_b.value), 0.0f);
    EXPECT_LE(largest_abs(q.w1.value), 1.0f);  // kaiming U(+-1/sqrt(1))
    const auto& c = *lokr.adapters()[1];  // [4, 3, 3, 3]: out (2, 2), in (1, 3); 1 < 3 / 2: w2_b [1, 3 * 9]
    EXPECT_EQ(c.w2_b.value.shape(), Shape({1, 27}));
    cfg.rank = 4;  // nothing decomposed: the whole w2 starts at zero and the scale is 1
    LoraNetwork full(m, nullptr, cfg, 9);
    EXPECT_EQ(full.adapters()[1]->w2.value.shape(), Shape({2, 3, 3, 3}));
    EXPECT_EQ(largest_abs(full.adapters()[1]->w2.value), 0.0f);
    EXPECT_DOUBLE_EQ(full.adapters()[1]->scale(), 1.0);
    // an untrained network adds exactly 0
    for (LoraNetwork* net : {&loha, &lokr, &full}) {
        const Tensor x = randn({2, 3, 5}, 6), xi = randn({1, 3, 6, 6}, 7);
        NoGradGuard ng;
        const Tensor y0 = apply(m.q, Var(x)).value(), c0 = apply(m.conv, Var(xi)).value();
        LayerAdapters::Bind b(*net);
        EXPECT_EQ(largest_diff(apply(m.q, Var(x)).value(), y0), 0.0f);
        EXPECT_EQ(largest_diff(apply(m.conv, Var(xi)).value(), c0), 0.0f);
    }
}

// The LoHa / LoKr deltas and their gradients: the network's forward is the formula (a Kronecker product written
// out element by element here), and the tape's gradients of every factor match finite differences.
TEST(LycorisGradcheck, HadamardAndKroneckerDeltas) {
    const Fn loha = [](const std::vector<Var>& v) {
        return linear(v[0], matmul(v[1], v[2]) * matmul(v[3], v[4])) * 0.5f;
    };
    GradcheckResult r = gradcheck(loha, {randn({2, 5}, 1), randn({4, 2}, 2, 0.5f), randn({2, 5}, 3, 0.5f),
                                         randn({4, 2}, 4, 0.5f), randn({2, 5}, 5, 0.5f)});
    EXPECT_TRUE(r.ok) << r.message;
    const Conv2dParams p = Conv2dParams::same(1, 1);
    const Fn lokr = [p](const std::vector<Var>& v) {  // kron(w1 [2, 1], w2_a [2, 1] w2_b [1, 27]) as a conv weight
        const Var w2 = matmul(v[2], v[3]);
        return conv2d(v[0], (v[1].reshape({2, 1, 1, 1}) * w2.reshape({1, 2, 1, 27})).reshape({4, 3, 3, 3}), Var(), p);
    };
    r = gradcheck(lokr, {randn({1, 3, 5, 5}, 6), randn({2, 1}, 7, 0.5f), randn({2, 1}, 8, 0.5f),
                         randn({1, 27}, 9, 0.5f)});
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_GT(r.checked, 0);

    // the network's LoKr delta is kron(w1, w2) (out (2, 2) x in (1, 5) on the [4, 5] layer, w2 whole at rank 4)
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.algo = LoraAlgo::LoKr;
    cfg.rank = 4;
    cfg.alpha = 3;
    cfg.decompose_both = true;  // (w1 stays whole: rank 4 is not below max(2, 1) / 2)
    cfg.targets = parse_lora_targets("attn");
    LoraNetwork net(m, nullptr, cfg, 2);
    auto& a = *net.adapters()[0];
    ASSERT_TRUE(a.w1.defined() && a.w2.defined());
    a.w2.value = randn(a.w2.value.shape(), 4);
    NoGradGuard ng;
    const Tensor d = a.weight_delta().value().contiguous();
    const Tensor w1 = a.w1.value.contiguous(), w2 = a.w2.value.contiguous();
    ASSERT_EQ(d.shape(), Shape({4, 5}));
    for (int64_t i = 0; i < 2; ++i)
        for (int64_t k = 0; k < 2; ++k)
            for (int64_t l = 0; l < 5; ++l)
                EXPECT_FLOAT_EQ(d.data<float>()[(i * 2 + k) * 5 + l], w1.data<float>()[i] * w2.data<float>()[k * 5 + l]);
    EXPECT_DOUBLE_EQ(a.scale(), 1.0);  // neither factor decomposed
    const Tensor x = randn({3, 5}, 5);
    const Tensor base = apply(m.q, Var(x)).value();
    LayerAdapters::Bind b(net);
    const Tensor y = apply(m.q, Var(x)).value();
    EXPECT_LT(largest_diff(y, add(base, linear(x, d))), 1e-5f);
}

// Central differences (eps 1e-2) of loss() in every `stride`-th value of `p` against the gradient `g` collected for
// it; returns how many values were checked.
int64_t expect_fd_gradient(Param& p, ParamGrads& g, const std::function<Var()>& loss, int64_t stride) {
    const Tensor grad = g.grad(p).contiguous();
    EXPECT_TRUE(grad.defined());
    if (!grad.defined()) return 0;
    float* v = p.value.data<float>();
    int64_t checked = 0;
    for (int64_t i = 0; i < p.value.numel(); i += stride) {
        const float keep = v[i], eps = 1e-2f;
        NoGradGuard ng;
        v[i] = keep + eps;
        clear_packed_weights();  // (a product may have kept a packed copy of the value edited in place)
        const float up = loss().value().item();
        v[i] = keep - eps;
        clear_packed_weights();
        const float dn = loss().value().item();
        v[i] = keep;
        clear_packed_weights();
        const float fd = (up - dn) / (2 * eps);
        EXPECT_NEAR(grad.data<float>()[i], fd, 2e-2f * (1 + std::abs(fd))) << i;
        ++checked;
    }
    return checked;
}

// The bound network's tape gradients of every adapter tensor of `net` on NamedLayers<5, 4, 4, 8, 2> (its linear and
// strided 3x3 conv) against central finite differences; `g` holds the gradients afterwards. Returns the values checked.
// loss() (which binds `net`) backpropagated into `g`, then every adapter tensor's gradient against central finite
// differences; returns the values checked.
int64_t fd_check_network(LoraNetwork& net, ParamGrads& g, const std::function<Var()>& loss) {
    {
        ParamGrads::Bind b(g);
        backward(loss());
    }
    int64_t checked = 0;
    for (auto& a : net.adapters())
        for (auto& [k, p] : a->tensors()) {
            SCOPED_TRACE(a->name + "." + k);
            checked += expect_fd_gradient(*p, g, loss, 1);
        }
    return checked;
}

int64_t fd_check_adapters(NamedLayers<5, 4, 4, 8, 2>& m, LoraNetwork& net, ParamGrads& g) {
    for_each_param(m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
    net.register_params(g);
    const Tensor xl = randn({3, 5}, 6), x = randn({1, 4, 7, 7}, 7), wl = randn({3, 4}, 9), wts = randn({1, 8, 4, 4}, 8);
    return fd_check_network(net, g, [&] {
        LayerAdapters::Bind ba(net);
        return sum(mul(apply(m.q, Var(xl)), Var(wl))) + sum(mul(apply(m.conv, Var(x)), Var(wts)));
    });
}

// Tucker cores of LoHa and LoKr (LyCORIS' use_tucker) on a strided 3x3 conv: the tape's gradients of every factor
// and core against central finite differences of the bound network's output.
TEST(LycorisGradcheck, TuckerCoresOfLohaAndLokr) {
    for (const LoraAlgo algo : {LoraAlgo::LoHa, LoraAlgo::LoKr}) {
        SCOPED_TRACE(lora_algo_name(algo));
        NamedLayers<5, 4, 4, 8, 2> m;  // conv 4 -> 8: LoKr's w2 [4, 2] decomposes at rank 1
        init_random(m, 3);
        widen(m);
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = algo == LoraAlgo::LoKr ? 1 : 2;
        cfg.alpha = 1.5;
        cfg.tucker = true;
        cfg.factor = algo == LoraAlgo::LoKr ? 2 : -1;
        cfg.targets = parse_lora_targets("attn+conv");
        LoraNetwork net(m, nullptr, cfg, 4);
        LoraNetwork::Adapter& a = *net.adapters()[1];
        ASSERT_TRUE(a.t2.defined()) << "no Tucker core";
        uint64_t seed = 40;
        for (auto& [k, p] : a.tensors()) p->value = randn(p->value.shape(), ++seed, 0.5f);
        ParamGrads g;
        for_each_param(m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
        net.register_params(g);
        const Tensor x = randn({1, 4, 7, 7}, 7), wts = randn({1, 8, 4, 4}, 8);
        auto loss = [&] {  // a weighted sum, so that every output matters differently
            LayerAdapters::Bind ba(net);
            return sum(mul(apply(m.conv, Var(x)), Var(wts)));
        };
        {
            ParamGrads::Bind b(g);
            backward(loss());
        }
        int64_t checked = 0;
        for (auto& [k, p] : a.tensors()) {
            SCOPED_TRACE(k);
            checked += expect_fd_gradient(*p, g, loss, std::max<int64_t>(1, p->value.numel() / 5));
        }
        EXPECT_GT(checked, 15);
    }
}

// IA3 and OFT (LyCORIS' diag-oft) on a Linear and a strided 3x3 conv: the tape's gradients of the scale vectors and
// of the OFT blocks (through the Cayley transform's backward rule) against central finite differences; and the
// Cayley op itself: R orthogonal for a skew Q, its gradient against finite differences.
TEST(LycorisGradcheck, Ia3OftAndGloraThroughTheCayleyTransform) {
    {
        const Fn f = [](const std::vector<Var>& v) { return cayley(v[0] - v[0].transpose(1, 2)) * v[1]; };
        const GradcheckResult r = gradcheck(f, {randn({2, 3, 3}, 1, 0.4f), randn({2, 3, 3}, 2)});
        EXPECT_TRUE(r.ok) << r.message;
        NoGradGuard ng;
        const Var q = Var(randn({2, 3, 3}, 3, 0.7f));
        const Tensor rr = cayley(q - q.transpose(1, 2)).value().contiguous();
        for (int64_t k = 0; k < 2; ++k)  // R^T R = I
            for (int64_t i = 0; i < 3; ++i)
                for (int64_t j = 0; j < 3; ++j) {
                    double dot = 0;
                    for (int64_t l = 0; l < 3; ++l)
                        dot += (double)rr.data<float>()[k * 9 + l * 3 + i] * rr.data<float>()[k * 9 + l * 3 + j];
                    EXPECT_NEAR(dot, i == j ? 1.0 : 0.0, 1e-5);
                }
    }
    for (const LoraAlgo algo : {LoraAlgo::IA3, LoraAlgo::OFT, LoraAlgo::GLoRA, LoraAlgo::BOFT, LoraAlgo::Full}) {
        SCOPED_TRACE(lora_algo_name(algo));
        NamedLayers<5, 4, 4, 8, 2> m;
        init_random(m, 3);
        widen(m);
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = 2;  // OFT: blocks of 2 rows
        cfg.targets = parse_lora_targets("attn+conv");
        LoraNetwork net(m, nullptr, cfg, 4);
        ASSERT_EQ(net.adapters().size(), 2u);
        uint64_t seed = 40;
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), ++seed, 0.5f);
        if (algo == LoraAlgo::OFT) {
            EXPECT_EQ(net.adapters()[0]->oft_blocks.value.shape(), (Shape{2, 2, 2}));  // 4 rows
            EXPECT_EQ(net.adapters()[1]->oft_blocks.value.shape(), (Shape{4, 2, 2}));  // 8 rows
        } else if (algo == LoraAlgo::BOFT) {  // 4 rows: 2 blocks of 2, 2 stages; 8 rows: 4 blocks, 3 stages
            EXPECT_EQ(net.adapters()[0]->oft_blocks.value.shape(), (Shape{2, 2, 2, 2}));
            EXPECT_EQ(net.adapters()[1]->oft_blocks.value.shape(), (Shape{3, 4, 2, 2}));
        } else if (algo == LoraAlgo::Full) {  // the weights' own shapes, and the biases' (LyCORIS' diff_b)
            EXPECT_EQ(net.adapters()[0]->diff.value.shape(), (Shape{4, 5}));
            EXPECT_EQ(net.adapters()[1]->diff.value.shape(), (Shape{8, 4, 3, 3}));
            EXPECT_EQ(net.adapters()[0]->diff_b.value.shape(), (Shape{4}));
            EXPECT_EQ(net.adapters()[1]->diff_b.value.shape(), (Shape{8}));
        } else if (algo == LoraAlgo::IA3) {
            EXPECT_EQ(net.adapters()[0]->ia3.value.shape(), (Shape{4}));
            EXPECT_EQ(net.adapters()[1]->ia3.value.shape(), (Shape{1, 8, 1, 1}));
        } else {  // LyCORIS' GLoRA shapes: a1 [in, r], a2 [r, in], b1 [out, r], b2 [r, in, kh, kw]
            EXPECT_EQ(net.adapters()[1]->a1.value.shape(), (Shape{4, 2, 1, 1}));
            EXPECT_EQ(net.adapters()[1]->a2.value.shape(), (Shape{2, 4, 1, 1}));
            EXPECT_EQ(net.adapters()[1]->b1.value.shape(), (Shape{8, 2, 1, 1}));
            EXPECT_EQ(net.adapters()[1]->b2.value.shape(), (Shape{2, 4, 3, 3}));
        }
        ParamGrads g;
        const int64_t checked = fd_check_adapters(m, net, g);
        EXPECT_GT(checked, algo == LoraAlgo::Full ? 3 : 11);
        // OFT's diagonal entries of B cancel in Q = B - B^T: their gradient is 0
        if (algo == LoraAlgo::OFT) EXPECT_EQ(g.grad(net.adapters()[0]->oft_blocks).contiguous().data<float>()[0], 0.0f);
    }
}

// OFT / BOFT with LyCORIS' constraint (active: Q scaled to the limit, the norm on the tape) and rescale: gradients of
// the blocks and the per-row scales against central finite differences.
TEST(LycorisGradcheck, OftConstraintAndRescale) {
    for (const LoraAlgo algo : {LoraAlgo::OFT, LoraAlgo::BOFT}) {
        SCOPED_TRACE(lora_algo_name(algo));
        NamedLayers<5, 4, 4, 8, 2> m;
        init_random(m, 3);
        widen(m);
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = 2;
        cfg.oft_constraint = 1e-3;
        cfg.oft_rescaled = true;
        cfg.targets = parse_lora_targets("attn+conv");
        LoraNetwork net(m, nullptr, cfg, 4);
        ASSERT_EQ(net.adapters().size(), 2u);
        EXPECT_EQ(net.adapters()[0]->rescale.value.shape(), (Shape{4, 1}));
        EXPECT_EQ(net.adapters()[1]->rescale.value.shape(), (Shape{8, 1, 1, 1}));
        EXPECT_EQ(net.adapters()[1]->rescale.value.f32().contiguous().data<float>()[3], 1.0f);  // ones at the start
        {  // and the start is the base model: R = I, rescale 1
            NoGradGuard ng;
            for (const auto& a : net.adapters()) EXPECT_EQ(largest_abs(a->weight_delta().value()), 0.0f);
        }
        uint64_t seed = 60;
        for (auto& a : net.adapters()) {
            a->oft_blocks.value = randn(a->oft_blocks.value.shape(), ++seed, 0.5f);
            a->rescale.value = add(randn(a->rescale.value.shape(), ++seed, 0.2f), Tensor::full(a->rescale.value.shape(), 1.0f));
            // the limit at half Q's norm: active, and 1e-2 steps in one value do not cross it
            const Tensor bl = a->oft_blocks.value.contiguous();
            const int64_t b = bl.shape().back(), nb = bl.numel() / (b * b);
            double n2 = 0;
            for (int64_t k = 0; k < nb; ++k)
                for (int64_t i = 0; i < b; ++i)
                    for (int64_t j = 0; j < b; ++j) {
                        const double q = bl.data<float>()[(k * b + i) * b + j] - bl.data<float>()[(k * b + j) * b + i];
                        n2 += q * q;
                    }
            a->constraint = 0.5 * std::sqrt(n2) / (double)a->base->shape[0];
        }
        ParamGrads g;
        const int64_t checked = fd_check_adapters(m, net, g);
        EXPECT_GT(checked, 20);
        {  // the constrained Q has the limit's norm: R differs from the unconstrained one
            NoGradGuard ng;
            const Tensor held = net.adapters()[1]->weight_delta().value().clone();
            const double c = net.adapters()[1]->constraint;
            net.adapters()[1]->constraint = 0;
            EXPECT_GT(largest_diff(held, net.adapters()[1]->weight_delta().value()), 1e-3f);
            net.adapters()[1]->constraint = c;
        }
    }
    LoraConfig bad;
    bad.algo = LoraAlgo::LoHa;
    bad.oft_constraint = 1e-4;
    TwoLayers m;
    init_random(m, 1);
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, bad, 1); }), HasSubstr("--constraint and --rescaled are OFT's and BOFT's"));
    bad.algo = LoraAlgo::OFT;
    bad.oft_constraint = -1;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, bad, 1); }), HasSubstr("--constraint must be a finite number in [0, 1e6]"));
}

// f32 base weights run one product with W + scale * delta(W) (LyCORIS' default), quantized ones (a GGUF base) the
// bypass form W x + scale * delta(W) x: on the same values both give the same outputs and factor gradients.
TEST(LycorisNetwork, MergedAndBypassFormsAgree) {
    for (const LoraAlgo algo : {LoraAlgo::LoHa, LoraAlgo::LoKr}) {
        SCOPED_TRACE(lora_algo_name(algo));
        QuantizableLayers f32, q8;
        init_random(f32, 3);
        init_random(q8, 3);
        q8.q.weight.value = test::random_weight(GgmlType::Q8_0, {8, 64}, 1);
        q8.conv.weight.value = test::random_weight(GgmlType::Q8_0, {8, 32, 3, 3}, 2);
        f32.q.weight.value = dequantize_weight(q8.q.weight.value);
        f32.conv.weight.value = dequantize_weight(q8.conv.weight.value);
        widen(f32);
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = 2;
        cfg.alpha = 1.5;
        cfg.targets = parse_lora_targets("attn+conv");
        LoraNetwork nf(f32, nullptr, cfg, 4), nq(q8, nullptr, cfg, 4);
        uint64_t seed = 10;
        for (size_t i = 0; i < nf.adapters().size(); ++i) {
            auto tf = nf.adapters()[i]->tensors(), tq = nq.adapters()[i]->tensors();
            for (size_t k = 0; k < tf.size(); ++k)
                tf[k].second->value = tq[k].second->value = randn(tf[k].second->value.shape(), ++seed, 0.5f);
        }
        {
            NoGradGuard ng;
            EXPECT_TRUE(nf.weight(f32.q).defined());
            EXPECT_FALSE(nq.weight(q8.q).defined());  // (the blocks: the bypass form)
        }
        const Tensor x = randn({2, 3, 64}, 6), xi = randn({1, 32, 6, 6}, 7);
        std::vector<Tensor> out, grads;
        for (auto [m, net] : {std::pair<QuantizableLayers*, LoraNetwork*>{&f32, &nf}, {&q8, &nq}}) {
            ParamGrads g;
            for_each_param(*m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
            net->register_params(g);
            ParamGrads::Bind b(g);
            LayerAdapters::Bind ba(*net);
            const Var y = apply(m->q, Var(x)), yc = apply(m->conv, Var(xi));
            backward(sum(square(y)) + sum(square(yc)));
            out.push_back(y.value());
            out.push_back(yc.value());
            for (auto& a : net->adapters())
                for (auto& [k, p] : a->tensors()) grads.push_back(g.grad(*p));
        }
        EXPECT_LT(largest_diff(out[0], out[2]), 1e-4f * std::max(1.0f, largest_abs(out[0])));
        EXPECT_LT(largest_diff(out[1], out[3]), 1e-4f * std::max(1.0f, largest_abs(out[1])));
        EXPECT_GT(largest_abs(out[0]), 0.1f);
        const size_t n = grads.size() / 2;
        ASSERT_EQ(n, algo == LoraAlgo::LoHa ? 8u : 6u);
        for (size_t i = 0; i < n; ++i) {
            ASSERT_TRUE(grads[i].defined() && grads[n + i].defined()) << i;
            EXPECT_GT(largest_abs(grads[i]), 0.0f) << i;
            EXPECT_LT(largest_diff(grads[i], grads[n + i]), 1e-4f * std::max(1.0f, largest_abs(grads[i]))) << i;
        }
    }
}

// DoRA (--dora) on each algorithm: the magnitude starts at ||W|| per output row (the untrained network is the base up
// to eps), the file's dora_scale is what nuance's loader (ComfyUI's rule, golden-tested) reads as per output row, and
// the merged model computes the bound network's forward.
TEST(DoraNetwork, StartsAtTheBaseAndTheFileMergesToTheBoundForward) {
    for (const LoraAlgo algo : {LoraAlgo::LoRA, LoraAlgo::LoHa, LoraAlgo::LoKr}) {
        SCOPED_TRACE(lora_algo_name(algo));
        TinySd15 m;
        widen(*m.unet);
        widen(*m.te);
        LoraConfig cfg;
        cfg.algo = algo;
        cfg.rank = 2;
        cfg.alpha = 1;
        cfg.dora = true;
        cfg.targets = parse_lora_targets("all-linear+conv");
        LoraNetwork net(*m.unet, m.te.get(), cfg, 1);
        for (const auto& a : net.adapters()) {
            const Shape& s = a->base->shape;
            ASSERT_TRUE(a->magnitude.defined()) << a->name;
            EXPECT_EQ(a->magnitude.value.shape(), a->conv ? Shape({s[0], 1, 1, 1}) : Shape({s[0], 1})) << a->name;
            EXPECT_EQ(a->tensors().back().first, "dora_scale");
        }
        const Tensor x = randn({1, m.unet->config().in_channels, 8, 8}, 4), t = Tensor::from_vector({300.0f}, {1});
        const Tensor ids = Tensor::from_ids(std::vector<int64_t>(77, 49407), {1, 77});
        auto forward = [&](LoraNetwork* n) {
            NoGradGuard ng;
            std::optional<LayerAdapters::Bind> b;
            if (n) b.emplace(*n);
            return unet_forward(*m.unet, Var(x), t, clip_encode(*m.te, ids)).value();
        };
        const Tensor base = forward(nullptr);
        EXPECT_LT(largest_diff(forward(&net), base), 1e-4f * std::max(1.0f, largest_abs(base)));
        uint64_t seed = 50;
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors())
                p->value = k == "dora_scale" ? mul(p->value, add(randn(p->value.shape(), ++seed, 0.1f), 1.0f))
                                             : randn(p->value.shape(), ++seed, 0.3f);
        const Tensor bound = forward(&net);
        EXPECT_GT(largest_diff(bound, base), 1e-2f);
        test::TempDir dir("dora_save");
        const std::string path = dir / "dora.safetensors";
        net.save_kohya(path, {});
        const LoraFile lf = load_lora(path);
        for (const auto& mod : lf.modules) EXPECT_TRUE(mod.dora_scale.defined()) << mod.name;
        LoraMerge merge;
        const LoraApplyReport r = merge.apply({{"text_encoder", m.te.get()}, {"unet", m.unet.get()}}, lf, 1.0f);
        EXPECT_EQ(r.matched, (int64_t)net.adapters().size());
        EXPECT_LT(largest_diff(forward(nullptr), bound), 1e-4f * std::max(1.0f, largest_abs(bound)));
    }
    // the norm needs the float weight: a quantized base is refused, naming the layer
    QuantizableLayers q8;
    init_random(q8, 3);
    q8.q.weight.value = test::random_weight(GgmlType::Q8_0, {8, 64}, 1);
    LoraConfig cfg;
    cfg.dora = true;
    cfg.targets = parse_lora_targets("attn");
    EXPECT_THAT(error_of([&] { LoraNetwork n(q8, nullptr, cfg, 1); }),
                HasSubstr("--dora needs the base weights in f32"));
}

TEST(DoraGradcheck, MagnitudeAndDirection) {
    // W' = m * V / (||V|| + eps) per output row, V = W + s * up * down, for a linear and a 3x3 conv
    const Tensor w = randn({4, 5}, 1), wc = randn({4, 3, 3, 3}, 2);
    const Fn lin = [w](const std::vector<Var>& v) {
        const Var V = Var(w) + matmul(v[2], v[1]) * 0.5f;
        const Var W = V * (v[3] / (sqrt(sum(square(V), 1, true) + 1e-30f) + 1.1920929e-7f));
        return linear(v[0], W);
    };
    GradcheckResult r = gradcheck(lin, {randn({2, 5}, 3), randn({2, 5}, 4, 0.5f), randn({4, 2}, 5, 0.5f),
                                        add(randn({4, 1}, 6, 0.1f), 2.0f)});
    EXPECT_TRUE(r.ok) << r.message;
    const Fn conv = [wc](const std::vector<Var>& v) {
        const Var V = Var(wc) + matmul(v[2], v[1]).reshape({4, 3, 3, 3});
        const Var n = sum(square(V).reshape({4, 27}), 1, true).reshape({4, 1, 1, 1});
        return conv2d(v[0], V * (v[3] / (sqrt(n + 1e-30f) + 1.1920929e-7f)), Var(), Conv2dParams::same(1, 1));
    };
    r = gradcheck(conv, {randn({1, 3, 5, 5}, 7), randn({2, 27}, 8, 0.3f), randn({4, 2}, 9, 0.3f),
                         add(randn({4, 1, 1, 1}, 10, 0.1f), 3.0f)});
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_GT(r.checked, 0);
    // the network computes that formula (a LoRA with DoRA on TwoLayers' linear)
    TwoLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1;
    cfg.dora = true;
    cfg.targets = parse_lora_targets("attn");
    LoraNetwork net(m, nullptr, cfg, 2);
    auto& a = *net.adapters()[0];
    a.up.value = randn(a.up.value.shape(), 11, 0.5f);
    a.magnitude.value = add(a.magnitude.value, 0.25f);
    NoGradGuard ng;
    const Tensor x = randn({3, 5}, 12);
    const Var V = Var(m.q.weight.value) + matmul(Var(a.up.value), Var(a.down.value)) * 0.5f;  // alpha 1 / rank 2
    const Var W = V * (Var(a.magnitude.value) / (sqrt(sum(square(V), 1, true) + 1e-30f) + 1.1920929e-7f));
    const Tensor yref = linear(Var(x), W, Var(m.q.bias.value)).value();
    LayerAdapters::Bind b(net);
    const Tensor y = apply(m.q, Var(x)).value();
    EXPECT_LT(largest_diff(y, yref), 1e-5f);
}

// Saved LoHa / LoKr files read back through nuance's LyCORIS loader (the one the golden LyCORIS files test) as the
// same kind, scale and delta: the merged model computes what the bound network computes.
TEST(LycorisNetwork, SavedFilesLoadAsLyCORISAndMergeToTheBoundForward) {
    struct Case {
        LoraAlgo algo; int64_t rank; int64_t factor; bool both; LoraKind kind; bool tucker = false; bool norm = false;
        double constraint = 0; bool rescaled = false;
    };
    for (const Case c : {Case{LoraAlgo::LoHa, 2, -1, false, LoraKind::LoHa}, Case{LoraAlgo::LoKr, 2, -1, false, LoraKind::LoKr},
                         Case{LoraAlgo::LoKr, 1, 4, true, LoraKind::LoKr}, Case{LoraAlgo::LoKr, 16, -1, false, LoraKind::LoKr},
                         Case{LoraAlgo::LoRA, 2, -1, false, LoraKind::LoRA, true},  // Tucker cores (LyCORIS' use_tucker)
                         Case{LoraAlgo::LoHa, 2, -1, false, LoraKind::LoHa, true},
                         Case{LoraAlgo::LoKr, 2, 2, false, LoraKind::LoKr, true},
                         Case{LoraAlgo::IA3, 1, -1, false, LoraKind::IA3}, Case{LoraAlgo::OFT, 4, -1, false, LoraKind::OFT},
                         Case{LoraAlgo::GLoRA, 2, -1, false, LoraKind::GLoRA}, Case{LoraAlgo::BOFT, 4, -1, false, LoraKind::BOFT},
                         Case{LoraAlgo::Full, 1, -1, false, LoraKind::Full},
                         Case{LoraAlgo::LoRA, 2, -1, false, LoraKind::LoRA, false, true},  // + --train-norm
                         Case{LoraAlgo::LoKr, 2, -1, false, LoraKind::LoKr, false, true},
                         // OFT / BOFT with LyCORIS' constraint (active: the random blocks' norms are far above it)
                         // and rescale
                         Case{LoraAlgo::OFT, 4, -1, false, LoraKind::OFT, false, false, 1e-3, true},
                         Case{LoraAlgo::BOFT, 4, -1, false, LoraKind::BOFT, false, false, 2e-3, true},
                         Case{LoraAlgo::OFT, 4, -1, false, LoraKind::OFT, false, false, 0, true}}) {
        SCOPED_TRACE(lora_algo_name(c.algo) + std::string(" rank ") + std::to_string(c.rank) + (c.tucker ? " tucker" : "") +
                     (c.norm ? " train_norm" : "") + (c.constraint > 0 ? " constraint" : "") +
                     (c.rescaled ? " rescaled" : ""));
        TinySd15 m;
        LoraConfig cfg;
        cfg.algo = c.algo;
        cfg.rank = c.rank;
        cfg.alpha = 1;
        cfg.factor = c.factor;
        cfg.decompose_both = c.both;
        cfg.conv_rank = c.tucker ? 3 : c.algo == LoraAlgo::BOFT ? 4 : 1;  // (BOFT: blocks of 2 rows at least)
        cfg.conv_alpha = 0.5;
        cfg.tucker = c.tucker;
        cfg.train_norm = c.norm;
        cfg.oft_constraint = c.constraint;
        cfg.oft_rescaled = c.rescaled;
        cfg.targets = parse_lora_targets("all-linear+conv");
        LoraNetwork net(*m.unet, m.te.get(), cfg, 1);
        int64_t norms = 0;
        for (const auto& a : net.adapters()) norms += a->algo == LoraAlgo::Norm;
        int64_t unet_norms = 0;  // every norm of the attention blocks and resnets (all-linear+conv), none else
        for_each_param(*m.unet, [&](const std::string& n, Param& p) {
            unet_norms += n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0 && p.value.dim() == 1 && lora_unet_norm_target(n.substr(0, n.size() - 7),
                                                                                            cfg.targets);
        });
        EXPECT_EQ(norms, c.norm ? unet_norms : 0);
        if (c.norm) EXPECT_GT(norms, 10);
        if (c.tucker) {  // the 3x3 convolutions' adapters have their cores (LoKr: where w2 is decomposed), the rest none
            int64_t cores = 0;
            for (const auto& a : net.adapters()) {
                const bool spatial = a->conv && a->base->shape[2] > 1;
                const Shape& w = a->base->shape;
                const bool core = a->mid.defined() || a->t1.defined() || a->t2.defined();
                if (c.algo != LoraAlgo::LoKr) EXPECT_EQ(core, spatial) << a->name;
                if (!core) continue;
                ASSERT_TRUE(spatial) << a->name;
                ++cores;
                if (c.algo == LoraAlgo::LoRA) {
                    EXPECT_EQ(a->down.value.shape(), (Shape{3, w[1], 1, 1}));
                    EXPECT_EQ(a->mid.value.shape(), (Shape{3, 3, 3, 3}));
                    EXPECT_EQ(a->up.value.shape(), (Shape{w[0], 3, 1, 1}));
                } else if (c.algo == LoraAlgo::LoHa) {
                    EXPECT_EQ(a->t1.value.shape(), (Shape{3, 3, 3, 3}));
                    EXPECT_EQ(a->w1_a.value.shape(), (Shape{3, w[0]}));
                    EXPECT_EQ(a->w2_b.value.shape(), (Shape{3, w[1]}));
                } else {
                    EXPECT_FALSE(a->w2.defined());
                    EXPECT_EQ(a->t2.value.shape(), (Shape{3, 3, 3, 3}));
                    EXPECT_EQ(a->w2_a.value.shape()[0], 3);
                }
            }
            EXPECT_GT(cores, c.algo == LoraAlgo::LoKr ? 0 : 4);
        }
        uint64_t seed = 30;
        for (auto& a : net.adapters())  // non-zero factors everywhere
            for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), ++seed, 0.3f);
        test::TempDir dir("lycoris_save");
        const std::string path = dir / "net.safetensors";
        net.save_kohya(path, {}, DType::F32);
        const LoraFile lf = load_lora(path);
        ASSERT_EQ(lf.modules.size(), net.adapters().size());
        for (const auto& mod : lf.modules) {
            const LoraNetwork::Adapter* a = nullptr;
            for (const auto& x : net.adapters())
                if (x->name == mod.name) a = x.get();
            ASSERT_NE(a, nullptr) << mod.name;
            EXPECT_EQ(mod.kind, a->algo == LoraAlgo::Norm ? LoraKind::Norm : c.kind) << mod.name;
            // (GLoRA: the loader applies alpha / rank inside delta(), its layout being told by the layer)
            const bool glora = mod.kind == LoraKind::GLoRA;
            EXPECT_DOUBLE_EQ(mod.scale(), glora ? 1.0 : a->scale()) << mod.name;
            NoGradGuard ng;
            EXPECT_LT(largest_diff(mod.delta(a->base->shape, path, a->base->value.f32(), 1.0f),
                                   mul(a->weight_delta().value(), glora ? (float)a->scale() : 1.0f)),
                      1e-5f)
                << mod.name;
        }
        if (c.constraint > 0) {  // the constraint is active: every adapter's delta differs from the unconstrained one
            NoGradGuard ng;
            int64_t turned = 0;
            for (const auto& a : net.adapters()) {
                EXPECT_EQ(lf.modules.front().alpha, (float)c.constraint);
                if (a->oft_blocks.value.shape().back() == 1) continue;  // 1 x 1 blocks (--conv-rank 1): Q = 0
                ++turned;
                const Tensor held = a->weight_delta().value().clone();
                a->constraint = 0;
                EXPECT_GT(largest_diff(held, a->weight_delta().value()), 1e-3f) << a->name;
                a->constraint = c.constraint;
            }
            EXPECT_GT(turned, 20);
        }
        if (c.rescaled) {
            for (const auto& a : net.adapters()) EXPECT_EQ(a->rescale.value.shape()[0], a->base->shape[0]);
        }
        widen(*m.unet);
        widen(*m.te);
        const Tensor x = randn({1, m.unet->config().in_channels, 8, 8}, 4), t = Tensor::from_vector({300.0f}, {1});
        const Tensor ids = Tensor::from_ids(std::vector<int64_t>(77, 49407), {1, 77});
        Tensor bound, plain;
        {
            NoGradGuard ng;
            plain = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te, ids)).value();
            LayerAdapters::Bind b(net);
            bound = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te, ids)).value();
        }
        LoraMerge merge;
        const LoraApplyReport r = merge.apply({{"text_encoder", m.te.get()}, {"unet", m.unet.get()}}, lf, 1.0f);
        EXPECT_EQ(r.matched, (int64_t)net.adapters().size());
        Tensor merged;
        {
            NoGradGuard ng;
            merged = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te, ids)).value();
        }
        EXPECT_GT(largest_diff(merged, plain), 1e-3f);  // (the adapters do change the output)
        EXPECT_LT(largest_diff(merged, bound), 1e-4f * std::max(1.0f, largest_abs(bound)));
    }
}

// --train-norm (LyCORIS' train_norm): a GroupNorm and a LayerNorm inside target blocks train w_norm / b_norm, the
// norm computing with (weight + w_norm, bias + b_norm); finite-difference gradients of both, beside a LoRA.
struct NormLayers : Module {
    Linear q{6, 6};
    GroupNorm gn{2, 4};
    LayerNorm ln{6};
    GroupNorm outside{2, 4};  // conv_norm_out: in no target block
    void visit(ParamVisitor& v) override {
        v("mid_block.attentions.0.transformer_blocks.0.attn1.to_q", q);
        v("down_blocks.0.resnets.0.norm1", gn);
        v("mid_block.attentions.0.transformer_blocks.0.norm1", ln);
        v("conv_norm_out", outside);
    }
};

TEST(LycorisGradcheck, TrainNormAdaptsTheBlocksNorms) {
    NormLayers m;
    init_random(m, 3);
    widen(m);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.targets = parse_lora_targets("attn+conv");
    cfg.train_norm = true;
    LoraNetwork net(m, nullptr, cfg, 4);
    ASSERT_EQ(net.adapters().size(), 3u);  // to_q's LoRA, then the two norms (names sorted)
    const LoraNetwork::Adapter& gn = *net.adapters()[1];
    const LoraNetwork::Adapter& ln = *net.adapters()[2];
    EXPECT_EQ(gn.name, "lora_unet_down_blocks_0_resnets_0_norm1");
    EXPECT_EQ(ln.name, "lora_unet_mid_block_attentions_0_transformer_blocks_0_norm1");
    EXPECT_EQ(gn.algo, LoraAlgo::Norm);
    EXPECT_EQ(gn.w_norm.value.shape(), (Shape{4}));
    EXPECT_EQ(ln.b_norm.value.shape(), (Shape{6}));
    EXPECT_EQ(net.numel(), 2 * 6 + 2 * 6 + 2 * 4 + 2 * 6);  // LoRA down/up (rank 2, 6 -> 6) + the norms' four vectors
    const Tensor xl = randn({2, 3, 6}, 6), x = randn({1, 4, 3, 3}, 7), wl = randn({2, 3, 6}, 9), wx = randn({1, 4, 3, 3}, 8);
    auto out = [&] {
        return sum(mul(apply(m.ln, apply(m.q, Var(xl))), Var(wl))) + sum(mul(apply(m.gn, Var(x)), Var(wx))) +
               sum(mul(apply(m.outside, Var(x)), Var(wx)));
    };
    Tensor plain, bound;
    {
        NoGradGuard ng;
        plain = out().value();
        LayerAdapters::Bind b(net);
        bound = out().value();
    }
    EXPECT_EQ(largest_diff(plain, bound), 0.0f);  // zeros at the start: the model as it was
    uint64_t seed = 50;
    for (auto& a : net.adapters())
        for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), ++seed, 0.5f);
    {  // the norm with weight + w_norm, bias + b_norm
        NoGradGuard ng;
        LayerAdapters::Bind b(net);
        const Tensor got = apply(m.gn, Var(x)).value();
        const Tensor want = group_norm(x, 2, add(m.gn.weight.value, gn.w_norm.value), add(m.gn.bias.value, gn.b_norm.value),
                                       m.gn.eps);
        EXPECT_LT(largest_diff(got, want), 1e-6f);
    }
    ParamGrads g;
    for_each_param(m, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
    net.register_params(g);
    const int64_t checked = fd_check_network(net, g, [&] {
        LayerAdapters::Bind ba(net);
        return out();
    });
    EXPECT_GE(checked, 20);
    // Which norms the targets reach: the attention blocks' with attn / ff / all-linear, the resnets' with conv.
    EXPECT_TRUE(lora_unet_norm_target("down_blocks.1.attentions.0.norm", parse_lora_targets("attn")));
    EXPECT_TRUE(lora_unet_norm_target("up_blocks.1.attentions.2.transformer_blocks.0.norm3", parse_lora_targets("ff")));
    EXPECT_FALSE(lora_unet_norm_target("down_blocks.1.resnets.0.norm2", parse_lora_targets("all-linear")));
    EXPECT_TRUE(lora_unet_norm_target("mid_block.resnets.1.norm2", parse_lora_targets("attn+conv")));
    EXPECT_FALSE(lora_unet_norm_target("conv_norm_out", parse_lora_targets("all-linear+conv")));
    EXPECT_FALSE(lora_unet_norm_target("down_blocks.1.attentions.0.proj_in", parse_lora_targets("all-linear")));
    // A selection without norms is an error naming the option; norm is no --network.
    cfg.targets = parse_lora_targets("attn");
    NamedLayers<5, 4, 3, 4, 2> no_norms;
    init_random(no_norms, 1);
    EXPECT_THAT(error_of([&] { LoraNetwork n(no_norms, nullptr, cfg, 1); }), HasSubstr("--train-norm: --targets 'attn' reaches no norm"));
    EXPECT_THROW(parse_lora_algo("norm"), Error);
}

TEST(LycorisNetwork, ErrorsNameTheOption) {
    TwoLayers m;
    init_random(m, 3);
    {  // BOFT on a layer of 5 rows (no even block splits it into a power of two), and the other LyCORIS kinds' options
        NamedLayers<5, 5, 3, 4, 1> odd;
        init_random(odd, 3);
        LoraConfig b;
        b.algo = LoraAlgo::BOFT;
        b.targets = parse_lora_targets("attn");
        EXPECT_THAT(error_of([&] { LoraNetwork n(odd, nullptr, b, 1); }),
                    HasSubstr("--network boft: layer 'mid_block.attentions.0.transformer_blocks.0.attn1.to_q' has 5 "
                              "output rows, which no even block size up to 8 splits"));
        for (const LoraAlgo a : {LoraAlgo::IA3, LoraAlgo::OFT, LoraAlgo::GLoRA, LoraAlgo::BOFT}) {
            b.algo = a;
            b.dora = true;
            EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, b, 1); }), HasSubstr("takes no --dora, --tucker"));
            b.dora = false;
            b.rank_dropout = 0.1;
            EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, b, 1); }), HasSubstr("--rank-dropout"));
            b.rank_dropout = 0;
        }
    }
    LoraConfig cfg;
    cfg.targets = parse_lora_targets("attn");
    cfg.factor = 4;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("LoKr's (--network lokr)"));
    cfg.factor = -1;
    cfg.decompose_both = true;
    cfg.algo = LoraAlgo::LoHa;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("not loha's"));
    cfg.algo = LoraAlgo::LoKr;
    cfg.factor = 0;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("--factor must be -1 or in 1.."));
    cfg.factor = -7;
    EXPECT_THAT(error_of([&] { LoraNetwork n(m, nullptr, cfg, 1); }), HasSubstr("--factor must be -1 or in 1.."));
}

// ---- the built-in model ----

// One optimizer step with lr 0 leaves the adapted model's output equal to the base model's.
TEST(LoraTrain, StepWithLrZeroKeepsTheBaseOutput) {
    StableDiffusionModel m = load_stable_diffusion(kEmoji);
    widen(*m.unet);
    widen(*m.te1.model);
    LoraConfig cfg;
    cfg.targets = parse_lora_targets("all-linear+conv");
    LoraNetwork net(*m.unet, m.te1.model.get(), cfg, 1);
    ParamGrads g;
    for (Module* mod : {(Module*)m.unet.get(), (Module*)m.te1.model.get()})
        for_each_param(*mod, [&](const std::string& n, Param& p) { g.add(n, p); g.set_trainable(p, false); });
    net.register_params(g);
    const int64_t C = m.unet->config().in_channels;
    const Tensor x = randn({2, C, 16, 16}, 1), t = Tensor::from_vector({10.0f, 700.0f}, {2});
    const Tensor ids = Tensor::from_ids(std::vector<int64_t>(2 * 77, 49407), {2, 77});
    // the base model's output (no adapters bound)
    Tensor base;
    {
        NoGradGuard ng;
        ParamGrads::Bind b(g);
        base = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
    }
    AdamWOptions ao;
    ao.lr = 0;
    AdamW opt(g, ao);
    {
        ParamGrads::Bind b(g);
        LayerAdapters::Bind ba(net);
        const Var out = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids));
        EXPECT_EQ(largest_diff(out.value(), base), 0.0f);  // up = 0: the untrained adapters add exactly 0
        backward(mse_loss(out, Var(randn(out.shape(), 2))));
    }
    int64_t up_with_grad = 0;
    for (const auto& a : net.adapters()) up_with_grad += g.grad(a->up).defined() && largest_abs(g.grad(a->up)) > 0;
    EXPECT_GT(up_with_grad, (int64_t)net.adapters().size() / 2);  // the step has real gradients
    int64_t frozen_with_grad = 0;
    for_each_param(*m.unet, [&](const std::string&, Param& p) { frozen_with_grad += g.grad(p).defined(); });
    EXPECT_EQ(frozen_with_grad, 0);
    opt.step();
    for (const auto& [k, v] : opt.state_dict()) EXPECT_EQ(k.rfind("lora_", 0), 0u) << k;  // no state for the base
    {
        NoGradGuard ng;
        ParamGrads::Bind b(g);
        LayerAdapters::Bind ba(net);
        const Tensor after = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
        EXPECT_EQ(largest_diff(after, base), 0.0f);
    }
}

// A tiny random f32 checkpoint of `family` (sd2, sdxl) in `dir`, as a LoRA base.
std::string write_tiny_base(const test::TempDir& dir, const std::string& family, uint64_t seed) {
    const std::string path = dir / ("tiny-" + family + ".safetensors");
    RandomModelOptions ro;
    ro.family = family;
    ro.tiny = true;
    ro.dtype = DType::F32;
    ro.seed = seed;
    write_random_checkpoint(path, ro);
    return path;
}

TrainOptions lora_options(const std::string& data, const std::string& out) {
    TrainOptions o;
    o.model = "lora";
    o.base = kEmoji;
    o.data = data;
    o.output = out;
    o.resolution = 32;
    o.batch = 3;
    o.steps = 40;
    o.warmup = 0;
    o.lr = 3e-3f;
    o.ema_decay = 0;
    o.caption_dropout = 0;
    o.checkpoint_every = 20;
    o.lora_rank = 4;
    o.lora_alpha = 4;
    o.lora_targets = "all-linear+conv";
    o.train_text_encoder = true;
    o.seed = 3;
    return o;
}

// What a trained LoRA run must show on the built-in model `m` (widened; `net` holds the run's last checkpoint): the
// adapters change the UNet output, the saved file merged into a fresh model by nuance's loader reproduces the trained
// forward (float tolerance), and the loss on a fixed batch (the training images' latents at fixed timesteps and
// noise; the per-step training loss is too noisy over random timesteps to compare a few steps) falls. Returns the
// fixed-batch loss before and after.
std::pair<double, double> expect_trained_run(StableDiffusionModel& m, LoraNetwork& net, const std::string& exported,
                                             const std::string& data) {
    const Tensor x = randn({2, 4, 16, 16}, 1), t = Tensor::from_vector({50.0f, 600.0f}, {2});
    const Tensor ids = Tensor::from_ids(std::vector<int64_t>(2 * 77, 49407), {2, 77});
    Tensor trained, base_out;
    {
        NoGradGuard ng;
        base_out = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
        LayerAdapters::Bind ba(net);
        trained = unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
    }
    StableDiffusionModel merged = load_stable_diffusion(kEmoji);
    LoraMerge merge;
    const LoraApplyReport ar = merge.apply(merged.modules(), load_lora(exported), 1.0f);
    EXPECT_EQ(ar.matched, ar.modules);
    widen(*merged.unet);
    widen(*merged.te1.model);
    Tensor loaded;
    {
        NoGradGuard ng;
        loaded = unet_forward(*merged.unet, Var(x), t, clip_encode(*merged.te1.model, ids)).value();
    }
    EXPECT_GT(largest_diff(trained, base_out), 1e-3f);  // the adapters change the output
    EXPECT_LT(largest_diff(loaded, trained), 2e-3f * std::max(1.0f, largest_abs(trained)));

    DatasetOptions dopt;
    dopt.resolution = 32;
    ImageCaptionDataset ds(data, dopt);
    Mt19937 drng(1);
    std::vector<Tensor> imgs;
    std::vector<int64_t> tok, ts;
    for (int64_t i = 0; i < ds.size(); ++i) {
        const Sample smp = ds.get(i, drng);
        imgs.push_back(smp.image.unsqueeze(0));
        const auto v = ClipTokenizer::builtin().encode_padded(smp.caption, ClipTokenizer::kEosId, 77);
        tok.insert(tok.end(), v.begin(), v.end());
        ts.push_back(100 + 150 * i);
    }
    const Tensor x0 = m.vae->to_latents(m.vae->encode(cat(imgs, 0)).mean);
    const NoisedBatch nb = add_training_noise(x0, randn(x0.shape(), 11), ts, NoiseSchedule(), "epsilon");
    const Tensor tid = Tensor::from_ids(tok, {ds.size(), 77});
    NoGradGuard ng;
    const double before_l =
        mse_loss(unet_forward(*m.unet, Var(nb.x_t), nb.timesteps, clip_encode(*m.te1.model, tid)), Var(nb.target))
            .item();
    LayerAdapters::Bind ba(net);
    const double after_l =
        mse_loss(unet_forward(*m.unet, Var(nb.x_t), nb.timesteps, clip_encode(*m.te1.model, tid)), Var(nb.target))
            .item();
    EXPECT_LT(after_l, before_l);
    return {before_l, after_l};
}

TEST(LoraTrain, LossFallsAndTheSavedFileReproducesTheTrainedForward) {
    test::TempDir data("lora_data"), out("lora_out");
    test::write_synthetic_emoji(data, 6);
    const TrainOptions o = lora_options(data.path().string(), out / "shapes");
    const TrainReport r = train_lora(o);
    EXPECT_EQ(r.steps, 40);
    EXPECT_EQ(r.exported, out / "shapes/shapes.safetensors");
    ASSERT_TRUE(fs::exists(r.exported));

    // kohya's layout and metadata
    const WeightFile wf = load_safetensors(r.exported);
    EXPECT_EQ(wf.metadata.at("ss_network_module"), "networks.lora");
    EXPECT_EQ(wf.metadata.at("ss_network_dim"), "4");
    EXPECT_EQ(wf.metadata.at("ss_network_alpha"), "4");
    EXPECT_EQ(wf.metadata.at("ss_output_name"), "shapes");
    EXPECT_EQ(wf.metadata.at("ss_base_model_version"), "sd_v1");
    EXPECT_EQ(wf.metadata.at("ss_steps"), "40");
    bool te = false, conv = false;
    for (const auto& [k, t] : wf.tensors) {
        te = te || k.rfind("lora_te_text_model_encoder_layers_0_self_attn_q_proj.", 0) == 0;
        conv = conv || (k.find("_resnets_0_conv1.lora_down.weight") != std::string::npos && t.dim() == 4);
        if (k.size() > 6 && k.compare(k.size() - 6, 6, ".alpha") == 0) {
            EXPECT_EQ(t.dim(), 0) << k;
        }
    }
    EXPECT_TRUE(te);
    EXPECT_TRUE(conv);

    // The trained adapters from the last checkpoint, run through the differentiable forward ...
    StableDiffusionModel m = load_stable_diffusion(kEmoji);
    widen(*m.unet);
    widen(*m.te1.model);
    LoraConfig cfg;
    cfg.rank = 4;
    cfg.alpha = 4;
    cfg.targets = parse_lora_targets(o.lora_targets);
    LoraNetwork net(*m.unet, m.te1.model.get(), cfg, 1);
    const CheckpointFile ck = load_checkpoint_file(r.checkpoint);
    for (auto& a : net.adapters()) {
        a->down.value = ck.tensors.at("model." + a->name + ".lora_down.weight");
        a->up.value = ck.tensors.at("model." + a->name + ".lora_up.weight");
        EXPECT_GT(largest_abs(a->up.value), 0.0f) << a->name;
    }
    expect_trained_run(m, net, r.exported, data.path().string());
}

// QLoRA-style: a LoRA trained on a Q8_0 GGUF base (`nuance quantize --layout full`). The UNet's and text encoder's
// matrices stay blocks (frozen leaves: their products read the blocks, their input gradients go through the layer
// dequantized for that call) and the adapters train. In fp32 the products with the blocks are the products with
// their dequantized values, so the run must be the run on a checkpoint holding those values as f32 (up to the
// summation order of the two product paths); with bf16 products (W8A8) it trains too.
TEST(LoraTrain, QuantizedBaseTrainsAdaptersBesideTheBlocks) {
    test::TempDir data("lora_qdata"), out("lora_qout");
    test::write_synthetic_emoji(data, 6);
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F32;
    const std::string src = out / "src.safetensors", q8 = out / "base_q8.gguf", deq = out / "base_deq.safetensors";
    write_random_checkpoint(src, ro);
    quantize_to_gguf(load_weights(src), q8, GgmlType::Q8_0, GgufLayout::Full);
    {  // the GGUF's values, every tensor as f32, under the same keys
        const WeightFile g = load_weights(q8);
        std::vector<std::pair<std::string, Tensor>> t;
        size_t blocks = 0;
        for (const auto& [k, v] : g.tensors) {
            blocks += is_quantized_storage(v);
            t.emplace_back(k, is_quantized_storage(v) ? dequantize_weight(v) : v.f32().contiguous());
        }
        ASSERT_GT(blocks, 10u);
        save_safetensors(deq, t);
    }
    // One step from both bases: the adapters' gradients (Adam's first update) agree up to the two product paths'
    // summation order (amplified where a gradient is near Adam's eps), so the up-weights point the same way.
    TrainOptions o = lora_options(data.path().string(), out / "deq1");
    o.base = deq;
    o.steps = 1;
    o.lr = 1e-3f;
    o.checkpoint_every = 1;
    o.precision = Precision::FP32;
    const TrainReport rd1 = train_lora(o);
    o.base = q8;
    o.output = out / "q81";
    const TrainReport rq1 = train_lora(o);
    const WeightFile a = load_safetensors(rd1.exported), b = load_safetensors(rq1.exported);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    double dot = 0, na = 0, nb = 0;
    size_t ups = 0;
    for (const auto& [k, ta] : a.tensors) {
        ASSERT_TRUE(b.tensors.count(k)) << k;
        if (k.find(".lora_up.weight") == std::string::npos) continue;
        ++ups;
        const Tensor x = ta.f32().contiguous(), y = b.tensors.at(k).f32().contiguous();
        ASSERT_EQ(x.shape(), y.shape()) << k;
        // (self-attention q/k over a single token at the tiny model's deepest level get no gradient in either run)
        EXPECT_EQ(largest_abs(y) > 0.0f, largest_abs(x) > 0.0f) << k;
        for (int64_t i = 0; i < x.numel(); ++i) {
            dot += (double)x.data<float>()[i] * y.data<float>()[i];
            na += (double)x.data<float>()[i] * x.data<float>()[i];
            nb += (double)y.data<float>()[i] * y.data<float>()[i];
        }
    }
    EXPECT_GT(ups, 10u);
    ASSERT_GT(nb, 0.0) << "the adapters on the quantized base did not train";
    EXPECT_GT(dot / std::sqrt(na * nb), 0.999) << "first update on the Q8_0 base vs on its dequantized values";
    // Eight steps: the same loss curve.
    o.steps = 8;
    o.checkpoint_every = 8;
    o.base = deq;
    o.output = out / "deq";
    const TrainReport rd = train_lora(o);
    o.base = q8;
    o.output = out / "q8";
    const TrainReport rq = train_lora(o);
    EXPECT_EQ(rq.steps, 8);
    EXPECT_NEAR(rq.first_loss, rd.first_loss, 1e-4 * rd.first_loss);
    EXPECT_NEAR(rq.last_loss, rd.last_loss, 2e-2 * rd.last_loss);
    // bf16 products: the W8A8 path forward, the dequantized layer backward; the loss stays finite and near.
    o.precision = Precision::BF16;
    o.output = out / "q8_bf16";
    const TrainReport rb = train_lora(o);
    ASSERT_TRUE(std::isfinite(rb.first_loss) && std::isfinite(rb.last_loss));
    EXPECT_NEAR(rb.first_loss, rd.first_loss, 0.05 * rd.first_loss);
    // ... and the same bits again (the LoRA's rank-4 convolutions once made 2-thread bf16 runs differ, or NaN).
    o.output = out / "q8_bf16_again";
    const TrainReport rb2 = train_lora(o);
    EXPECT_EQ(rb2.last_loss, rb.last_loss);
    const WeightFile f1 = load_safetensors(rb.exported), f2 = load_safetensors(rb2.exported);
    for (const auto& [k, t] : f1.tensors)
        EXPECT_EQ(std::memcmp(t.raw(), f2.tensors.at(k).raw(), t.nbytes()), 0) << k;
    // The file applies to the quantized model (beside its blocks, at run time) and changes its image.
    const auto base_model = load_model(q8);
    const auto lora_model = load_model(q8);
    LoraMerge merge;
    const LoraApplyReport ar = merge.apply(lora_model->modules(), load_lora(rq.exported), 1.0f);
    EXPECT_EQ(ar.matched, ar.modules);
    GenerateParams p;
    p.prompt = "a red circle";
    p.width = p.height = 64;
    p.steps = 2;
    p.seed = 5;
    p.sampler = "euler";
    EXPECT_NE(generate(*base_model, p).at(0).image.pixels, generate(*lora_model, p).at(0).image.pixels);
}

// A quantized weight is a frozen leaf: asking for its gradient fails naming it, as does making it trainable.
// --type on the base (QLoRA from a float checkpoint): the same blocks as the checkpoint's `--layout full` GGUF, so the
// same training run to the bit (an f16 checkpoint: the GGUF keeps its other tensors in f16 too), with the text
// encoder's adapters beside its blocks; DoRA and other models refuse it.
TEST(LoraTrain, TypeQuantizesTheBaseAsItsGgufFileWould) {
    test::TempDir data("lora_tdata"), out("lora_tout");
    test::write_synthetic_emoji(data, 6);
    RandomModelOptions ro;
    ro.tiny = true;
    ro.dtype = DType::F16;
    const std::string src = out / "src.safetensors", q8 = out / "base_q8.gguf";
    write_random_checkpoint(src, ro);
    quantize_to_gguf(load_weights(src), q8, GgmlType::Q8_0, GgufLayout::Full);
    TrainOptions o = lora_options(data.path().string(), out / "gguf");
    o.base = q8;
    o.steps = 2;
    o.precision = Precision::FP32;
    const TrainReport from_file = train_lora(o);
    o.base = src;
    o.base_weight_type = "q8_0";
    o.output = out / "type";
    const TrainReport typed = train_lora(o);
    const WeightFile a = load_safetensors(from_file.exported), b = load_safetensors(typed.exported);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& [k, t] : a.tensors) EXPECT_EQ(largest_diff(t, b.tensors.at(k)), 0.0f) << k;
    EXPECT_EQ(from_file.last_loss, typed.last_loss);
    o.lora_dora = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--dora needs the base's float weights"));
    o.lora_dora = false;
    o.base_weight_type = "q9";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("train: --type 'q9' is not a quantized type"));
    o.model = "ldm";
    o.base.clear();
    o.vae = "x";
    o.train_text_encoder = false;
    o.base_weight_type = "q8_0";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--type (a quantized base) is for --model lora"));
}

TEST(LoraTrainErrors, QuantizedWeightsCannotBeTrained) {
    const Tensor w = test::random_weight(GgmlType::Q8_0, {8, 64}, 3);
    EXPECT_THAT(error_of([&] { Var v(w, true); }), HasSubstr("Q8_0[8, 64] cannot require a gradient"));
    const Var frozen(w, false);
    EXPECT_TRUE(is_quantized_storage(frozen.value()));
    Param p({8, 64}, true);
    p.value = w;
    ParamGrads g;
    g.add("blk.weight", p);
    EXPECT_FALSE(g.var(p).requires_grad());
    EXPECT_THAT(error_of([&] { g.set_trainable(p, true); }),
                HasSubstr("parameter 'blk.weight' is quantized (Q8_0[8, 64]) and cannot be trained"));
    // The product and the input gradient through it: dx = g · W with W dequantized.
    const Tensor xin = randn({3, 64}, 4);
    Var x(xin, true);
    Var y;
    {
        ParamGrads::Bind bind(g);
        y = linear(x, g.var(p), Var());
    }
    backward(sum(y));
    const Tensor want = matmul(Tensor::full({3, 8}, 1.0f), dequantize_weight(w), Precision::FP32);
    EXPECT_LT(largest_diff(x.grad(), want), 1e-5f * std::max(1.0f, largest_abs(want)));
    // The same for a convolution (a 3x3 quantized kernel, padding 1): dx through the dequantized kernel.
    const Tensor wc = test::random_weight(GgmlType::Q8_0, {6, 32, 3, 3}, 5);
    const Tensor xc = randn({2, 32, 5, 5}, 6), gy = randn({2, 6, 5, 5}, 7);
    Var xq(xc, true), xd(xc, true);
    backward(sum(mul(conv2d(xq, Var(wc, false), Var(), Conv2dParams::same(1)), Var(gy))));
    backward(sum(mul(conv2d(xd, Var(dequantize_weight(wc), false), Var(), Conv2dParams::same(1)), Var(gy))));
    EXPECT_LT(largest_diff(xq.grad(), xd.grad()), 1e-5f * std::max(1.0f, largest_abs(xd.grad())));
}

// With one definition per forward the SDXL UNet's extras (pooled text + time ids through add_embedding, transformer
// depth per level, linear projections) train for free: a LoRA of a tiny random SDXL base lowers the loss on a fixed
// batch, and the saved kohya file loads through nuance's LoRA loader (every module matched) and changes the output.
TEST(LoraTrain, SdxlBaseLowersTheLossAndTheSavedFileLoadsAndChangesTheOutput) {
    test::TempDir data("lora_xl_data"), out("lora_xl_out");
    test::write_synthetic_emoji(data, 4);
    const std::string base = write_tiny_base(out, "sdxl", 4);
    TrainOptions o = lora_options(data.path().string(), out / "xl");
    o.base = base;
    o.batch = 2;
    o.steps = 12;
    o.checkpoint_every = 12;
    o.lr = 1e-2f;
    o.lora_targets = "attn";
    o.train_text_encoder = false;
    const TrainReport r = train_lora(o);
    EXPECT_EQ(r.steps, 12);
    ASSERT_TRUE(fs::exists(r.exported));
    const WeightFile wf = load_safetensors(r.exported);
    EXPECT_EQ(wf.metadata.at("ss_base_model_version"), "sdxl_base_v1-0");
    EXPECT_EQ(wf.metadata.at("modelspec.architecture"), "stable-diffusion-xl-v1-base/lora");
    EXPECT_EQ(wf.metadata.at("ss_clip_skip"), "None");

    // The fixed batch: the training images' latents at fixed timesteps and noise, SDXL's conditioning as training
    // builds it (both encoders' penultimate layers, the second's projected pooled output, time ids of 32 px).
    StableDiffusionModel m = load_stable_diffusion(base);
    ASSERT_EQ(m.family, SDFamily::SDXL);
    DatasetOptions dopt;
    dopt.resolution = 32;
    ImageCaptionDataset ds(data.path().string(), dopt);
    Mt19937 drng(1);
    std::vector<Tensor> imgs;
    std::vector<int64_t> tok1, tok2, ts;
    for (int64_t i = 0; i < ds.size(); ++i) {
        const Sample smp = ds.get(i, drng);
        imgs.push_back(smp.image.unsqueeze(0));
        const auto v1 = m.te1.tokenizer().encode_padded(smp.caption, m.te1.pad_id, 77);
        const auto v2 = m.te2.tokenizer().encode_padded(smp.caption, m.te2.pad_id, 77);
        tok1.insert(tok1.end(), v1.begin(), v1.end());
        tok2.insert(tok2.end(), v2.begin(), v2.end());
        ts.push_back(100 + 200 * i);
    }
    const int64_t B = ds.size();
    const ClipTextOutput o1 = m.te1.model->forward(Tensor::from_ids(tok1, {B, 77}));
    const ClipTextOutput o2 = m.te2.model->forward(Tensor::from_ids(tok2, {B, 77}));
    const Tensor ctx =
        cat({o1.hidden_states[o1.hidden_states.size() - 2], o2.hidden_states[o2.hidden_states.size() - 2]}, -1);
    UNetExtra extra;
    extra.text_embeds = o2.text_embeds.defined() ? o2.text_embeds : o2.pooled;
    std::vector<float> tid;
    for (int64_t b = 0; b < B; ++b)
        for (float v : {32.0f, 32.0f, 0.0f, 0.0f, 32.0f, 32.0f}) tid.push_back(v);
    extra.time_ids = Tensor::from_vector(tid, {B, 6});
    const Tensor x0 = m.vae->to_latents(m.vae->encode(cat(imgs, 0)).mean);
    const NoisedBatch nb = add_training_noise(x0, randn(x0.shape(), 11), ts, NoiseSchedule(), m.prediction);
    auto loss_of = [&](const StableDiffusionModel& mm) {
        const Tensor d = (mm.unet->forward(nb.x_t, nb.timesteps, ctx, extra) - nb.target).contiguous();
        double s2 = 0;
        for (int64_t i = 0; i < d.numel(); ++i) s2 += (double)d.data<float>()[i] * d.data<float>()[i];
        return s2 / (double)d.numel();
    };
    const Tensor before_out = m.unet->forward(nb.x_t, nb.timesteps, ctx, extra);
    const double before = loss_of(m);
    LoraMerge merge;
    const LoraApplyReport ar = merge.apply(m.modules(), load_lora(r.exported), 1.0f);
    EXPECT_GT(ar.modules, 0);
    EXPECT_EQ(ar.matched, ar.modules);
    const double after = loss_of(m);
    EXPECT_LT(after, before);
    EXPECT_GT(largest_diff(m.unet->forward(nb.x_t, nb.timesteps, ctx, extra), before_out), 1e-4f);

    // The SDXL text encoders do not train (yet): the flag is refused by name.
    o.train_text_encoder = true;
    o.output = out / "xl-te";
    EXPECT_THAT(error_of([&] { train_lora(o); }), HasSubstr("training the SDXL text encoders is not supported"));
}

TEST(LoraTrain, ResumeContinuesBitExactly) {
    test::TempDir data("lora_data"), out("lora_out");
    test::write_synthetic_emoji(data, 6);
    TrainOptions o = lora_options(data.path().string(), out / "a");
    o.steps = 4;
    o.min_lr = o.lr;  // a constant lr: the 2-step first half then has the 4-step run's schedule
    o.checkpoint_every = 2;
    o.keep_checkpoints = 5;
    o.lora_targets = "attn";
    o.train_text_encoder = false;
    o.lora_dropout = 0.1;  // kohya's dropouts: keyed by the step, so a resumed run draws the same masks
    o.lora_rank_dropout = 0.2;
    o.lora_module_dropout = 0.2;
    o.lora_train_norm = true;  // the norms' w_norm / b_norm resume with the rest
    const TrainReport full = train_lora(o);
    TrainOptions half = o;
    half.output = out / "b";
    half.steps = 2;
    train_lora(half);
    half.steps = 4;
    half.resume = true;
    const TrainReport resumed = train_lora(half);
    EXPECT_EQ(resumed.steps, 2);
    const WeightFile a = load_safetensors(full.exported), b = load_safetensors(resumed.exported);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& [k, t] : a.tensors) EXPECT_EQ(largest_diff(t, b.tensors.at(k)), 0.0f) << k;
    EXPECT_EQ(a.metadata.at("ss_network_dropout"), "0.1");
    EXPECT_THAT(a.metadata.at("ss_network_args"), HasSubstr("\"rank_dropout\":\"0.2\""));
    EXPECT_THAT(a.metadata.at("ss_network_args"), HasSubstr("\"train_norm\":\"True\""));
    EXPECT_EQ(a.metadata.at("ss_network_module"), "lycoris.kohya");
    int64_t moved = 0;  // the trained norms moved from zero
    for (const auto& [k, t] : a.tensors)
        if (k.find(".w_norm") != std::string::npos || k.find(".b_norm") != std::string::npos) moved += largest_abs(t) > 0;
    EXPECT_GT(moved, 4);

    // a checkpoint of another configuration is refused
    half.steps = 6;
    half.lora_dropout = 0.3;
    EXPECT_THAT(error_of([&] { train_lora(half); }), HasSubstr("a LoRA of another configuration"));
    half.lora_dropout = 0.1;
    half.lora_train_norm = false;
    EXPECT_THAT(error_of([&] { train_lora(half); }), HasSubstr("a LoRA of another configuration"));
    half.lora_train_norm = true;
    half.lora_rank = 8;
    half.steps = 6;
    EXPECT_THAT(error_of([&] { train_lora(half); }), HasSubstr("a LoRA of another configuration"));
}

TEST(LoraTrainErrors, OptionsAndBasesAreChecked) {
    test::TempDir data("lora_data"), out("lora_out");
    test::write_synthetic_emoji(data, 3);
    TrainOptions o = lora_options(data.path().string(), out / "r");
    o.base.clear();
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--model lora needs --base"));
    o = lora_options(data.path().string(), out / "r");
    o.lora_rank = 5000;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--rank must be in 1..1024"));
    o = lora_options(data.path().string(), out / "r");
    o.lora_targets = "qkv";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("unknown part 'qkv'"));
    o = lora_options(data.path().string(), out / "r");
    o.ema_decay = 0.99f;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("no EMA"));
    o = lora_options(data.path().string(), out / "r");
    o.base = out / "missing";
    EXPECT_FALSE(error_of([&] { train(o); }).empty());
    o = lora_options(data.path().string(), out / "r");
    o.model = "ldm";
    o.vae = "x";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--base is for --model lora only"));
    o = lora_options(data.path().string(), out / "r");
    o.batch = 4;  // 3 images
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("fewer than the batch size"));
}

// ---- DreamBooth-style prior preservation (--reg-data, --class-prompt, --num-class-images, --prior-loss-weight) ----

int64_t png_count(const std::string& dir) {
    int64_t n = 0;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) n += e.path().extension() == ".png";
    return n;
}

// The UNet's output for `prompt` at fixed latents and timesteps, with a LoRA file merged at strength 1 (none: the
// base model).
Tensor class_output(const std::string& lora, const std::string& prompt) {
    StableDiffusionModel m = load_stable_diffusion(kEmoji);
    if (!lora.empty()) {
        LoraMerge merge;
        const LoraApplyReport ar = merge.apply(m.modules(), load_lora(lora), 1.0f);
        EXPECT_EQ(ar.matched, ar.modules);
    }
    widen(*m.unet);
    widen(*m.te1.model);
    const Tensor x = randn({3, 4, 4, 4}, 21), t = Tensor::from_vector({100.0f, 400.0f, 800.0f}, {3});
    std::vector<int64_t> ids;
    for (int i = 0; i < 3; ++i) {
        const auto v = ClipTokenizer::builtin().encode_padded(prompt, ClipTokenizer::kEosId, 77);
        ids.insert(ids.end(), v.begin(), v.end());
    }
    NoGradGuard ng;
    return unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, Tensor::from_ids(ids, {3, 77}))).value();
}

double rms_diff(const Tensor& a, const Tensor& b) {
    const Tensor d = (a.f32() - b.f32()).contiguous();
    double s = 0;
    for (int64_t i = 0; i < d.numel(); ++i) s += (double)d.data<float>()[i] * d.data<float>()[i];
    return std::sqrt(s / (double)d.numel());
}

// The base model draws the class images the folder lacks (once: a second run finds them), the run trains on both
// sets (kohya's metadata counts them), and the prior keeps the class prompt's output nearer the base model's than
// the same run without it (what prior preservation is for: the adapters learn the instances, not the whole class).
TEST(LoraTrain, PriorPreservationDrawsTheClassImagesOnceAndKeepsTheClass) {
    test::TempDir data("lora_pp_data"), out("lora_pp_out");
    test::write_synthetic_emoji(data, 6);
    const std::string cls = out / "class", prompt = "red apple";
    TrainOptions o = lora_options(data.path().string(), out / "plain");
    o.steps = 30;
    o.checkpoint_every = 30;
    const TrainReport plain = train_lora(o);

    TrainOptions p = o;
    p.output = out / "prior";
    p.reg_data = cls;
    p.class_prompt = prompt;
    p.num_class_images = 6;
    std::vector<int64_t> drawn;
    const TrainReport prior = train_lora(p, [&](const TrainProgress& pr) {
        if (pr.stage.empty()) return;
        EXPECT_EQ(pr.stage, "class images");
        EXPECT_EQ(pr.total, 6);
        drawn.push_back(pr.step);
    });
    EXPECT_EQ(drawn, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
    ASSERT_EQ(png_count(cls), 6);
    for (int i = 0; i < 6; ++i) {
        char stem[32];
        std::snprintf(stem, sizeof stem, "class-%06d", i);
        const Image im = read_image(cls + "/" + stem + ".png");
        EXPECT_EQ(im.width, 32);
        EXPECT_EQ(im.height, 32);
        std::ifstream f(cls + "/" + stem + ".txt");
        std::string caption((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        EXPECT_EQ(caption, prompt);
    }
    const WeightFile wf = load_safetensors(prior.exported);
    EXPECT_EQ(wf.metadata.at("ss_num_train_images"), "6");
    EXPECT_EQ(wf.metadata.at("ss_num_reg_images"), "6");
    EXPECT_EQ(wf.metadata.at("ss_prior_loss_weight"), "1");

    const Tensor base = class_output("", prompt);
    const double drift_plain = rms_diff(class_output(plain.exported, prompt), base);
    const double drift_prior = rms_diff(class_output(prior.exported, prompt), base);
    EXPECT_GT(drift_plain, 0.0);
    EXPECT_LT(drift_prior, 0.8 * drift_plain) << "plain " << drift_plain << ", prior " << drift_prior;

    // A second run finds the images; asking for one more draws exactly that one, under the next free name.
    drawn.clear();
    p.output = out / "again";
    p.steps = 2;
    p.checkpoint_every = 2;
    train_lora(p, [&](const TrainProgress& pr) { if (!pr.stage.empty()) drawn.push_back(pr.step); });
    EXPECT_TRUE(drawn.empty());
    EXPECT_EQ(png_count(cls), 6);
    p.output = out / "more";
    p.num_class_images = 7;
    train_lora(p);
    EXPECT_EQ(png_count(cls), 7);
    EXPECT_TRUE(fs::exists(cls + "/class-000006.png"));
}

// --prior-loss-weight 0: the class rows are in the batches but add nothing to the loss, so a step's loss is the
// instance rows' squared error summed over the whole batch's mean (a run whose batches hold only class images would
// not move); and kohya's --save_precision: every tensor cast (alphas too), the file loads.
TEST(LoraTrain, PriorLossWeightAndSavePrecision) {
    test::TempDir data("lora_pw_data"), out("lora_pw_out"), cls("lora_pw_class");
    test::write_synthetic_emoji(data, 3);
    for (int i = 0; i < 3; ++i) test::write_image(cls / ("c" + std::to_string(i) + ".png"), test::gradient_image(32, 32, i * 40));
    TrainOptions o = lora_options(data.path().string(), out / "w1");
    o.steps = 4;
    o.checkpoint_every = 4;
    o.lora_targets = "attn";
    o.train_text_encoder = false;
    o.reg_data = cls.path().string();
    o.class_prompt = "square";
    std::vector<double> loss1, loss0;
    train_lora(o, [&](const TrainProgress& p) { loss1.push_back(p.loss); });
    TrainOptions z = o;
    z.output = out / "w0";
    z.prior_loss_weight = 0;
    z.save_precision = "fp16";
    const TrainReport r0 = train_lora(z, [&](const TrainProgress& p) { loss0.push_back(p.loss); });
    ASSERT_EQ(loss1.size(), 4u);
    ASSERT_EQ(loss0.size(), 4u);
    EXPECT_LT(loss0[0], loss1[0]);  // the same first batch (same seed): the class rows' share is gone
    EXPECT_GT(loss0[0], 0.0);
    const WeightFile wf = load_safetensors(r0.exported);
    EXPECT_EQ(wf.metadata.at("ss_prior_loss_weight"), "0");
    for (const auto& [k, t] : wf.tensors) EXPECT_EQ(t.dtype(), DType::F16) << k;

    // the same run saved as fp32 and as fp16/bf16 differ by the cast alone
    TrainOptions f = z;
    f.output = out / "f32";
    f.save_precision = "fp32";
    const WeightFile w32 = load_safetensors(train_lora(f).exported);
    f.output = out / "bf16";
    f.save_precision = "bf16";
    const WeightFile wbf = load_safetensors(train_lora(f).exported);
    ASSERT_EQ(w32.tensors.size(), wf.tensors.size());
    for (const auto& [k, t] : w32.tensors) {
        EXPECT_EQ(t.dtype(), DType::F32) << k;
        EXPECT_EQ(largest_diff(t.to(DType::F16), wf.tensors.at(k)), 0.0f) << k;
        EXPECT_EQ(wbf.tensors.at(k).dtype(), DType::BF16) << k;
        EXPECT_EQ(largest_diff(t.to(DType::BF16), wbf.tensors.at(k)), 0.0f) << k;
    }
    StableDiffusionModel m = load_stable_diffusion(kEmoji);
    LoraMerge merge;
    const LoraApplyReport ar = merge.apply(m.modules(), load_lora(r0.exported), 1.0f);
    EXPECT_EQ(ar.matched, ar.modules);
    EXPECT_GT(ar.modules, 0);
}

TEST(LoraTrainErrors, PriorPreservationOptionsAreChecked) {
    test::TempDir data("lora_pe_data"), out("lora_pe_out");
    test::write_synthetic_emoji(data, 3);
    const std::string d = data.path().string();
    TrainOptions o = lora_options(d, out / "r");
    o.class_prompt = "dog";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("need --reg-data"));
    o = lora_options(d, out / "r");
    o.reg_data = out / "cls";
    o.num_class_images = 2;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--num-class-images needs --class-prompt"));
    o.class_prompt = "dog";
    o.num_class_images = kMaxClassImages + 1;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--num-class-images must be in 0..100000"));
    o = lora_options(d, out / "r");
    o.reg_data = out / "cls";
    for (float bad : {-1.0f, NAN, 1e5f}) {
        o.prior_loss_weight = bad;
        EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--prior-loss-weight must be in [0, 10000]"));
    }
    o = lora_options(d, out / "r");
    o.lora_targets = "attn";
    o.lora_conv_rank = 4;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("does not select (add +conv)"));
    o.lora_targets = "all-linear+conv";
    o.lora_conv_rank = 0;
    o.lora_conv_alpha = 2;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--conv-alpha needs --conv-rank"));
    o.lora_conv_rank = 2000;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--conv-rank must be in 0..1024"));
    o = lora_options(d, out / "r");
    o.save_precision = "fp8";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--save-precision must be fp32, fp16 or bf16"));
    o = lora_options(d, out / "r");
    o.class_prompt = "bad \xff byte";
    o.reg_data = out / "cls";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--class-prompt is not valid UTF-8"));
    // other models refuse the options
    o = lora_options(d, out / "r");
    o.model = "ldm";
    o.base.clear();
    o.train_text_encoder = false;
    o.init = "x";
    o.reg_data = out / "cls";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("are for --model lora"));
    o.reg_data.clear();
    o.save_precision = "fp16";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--save-precision is for --model lora"));
    // a missing folder with nothing to draw; a folder of images without captions and no --class-prompt
    o = lora_options(d, out / "r");
    o.reg_data = out / "missing";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--reg-data folder '" + out / "missing" + "' does not exist"));
    test::TempDir cls("lora_pe_cls");
    test::write_image(cls / "a.png", test::gradient_image(32, 32));
    o.reg_data = cls.path().string();
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("a.png' has no caption"));
    // drawing into a manifest folder (the new images would not be listed)
    test::write_text(cls / "manifest.jsonl", "{\"file\": \"a.png\", \"caption\": \"x\"}\n");
    o.class_prompt = "dog";
    o.num_class_images = 3;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("has a manifest.jsonl"));
    // too few images for a batch in both sets together
    o.num_class_images = 0;
    fs::remove(cls / "manifest.jsonl");
    o.batch = 5;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("hold 3 + 1 images, fewer than the batch size 5"));
}

// A LoHa and a LoKr trained on the built-in model: the fixed-batch loss falls, the file is LyCORIS' (keys, kohya
// metadata with lycoris.kohya and the algorithm), nuance's loader merges every module, and the merged model
// computes the trained forward; a checkpoint of another algorithm is refused on --resume.
TEST(LoraTrain, LohaAndLokrTrainAndTheirFilesReproduceTheTrainedForward) {
    test::TempDir data("lycoris_data"), out("lycoris_out");
    test::write_synthetic_emoji(data, 6);
    for (const std::string run : {"loha", "lokr", "dora", "full"}) {  // dora: a LoRA with DoRA's magnitudes
        SCOPED_TRACE(run);
        const bool dora = run == "dora";
        const std::string algo = dora ? "lora" : run;
        TrainOptions o = lora_options(data.path().string(), out / run);
        o.lora_algo = algo;
        o.lora_dora = dora;
        if (dora) o.limit = 5;  // (--limit: the first 5 of the 6 images)
        o.steps = 20;
        o.checkpoint_every = 20;
        o.lr = algo == "loha" ? 2e-3f : algo == "full" ? 1e-4f : 3e-3f;  // (full: the weights themselves)
        o.lora_targets = "all-linear+conv";
        o.lora_conv_rank = 2;
        o.lora_factor = algo == "lokr" ? 8 : -1;
        if (algo == "lokr") o.min_snr_gamma = 5, o.noise_offset = 0.05f;  // (kohya's options, in its metadata)
        if (algo == "loha") o.lora_rank_dropout = 0.1, o.lora_module_dropout = 0.05;  // (LyCORIS' network_args)
        const TrainReport r = train_lora(o);
        EXPECT_EQ(r.steps, 20);
        const WeightFile wf = load_safetensors(r.exported);
        EXPECT_EQ(wf.metadata.at("ss_network_module"), "lycoris.kohya");
        EXPECT_THAT(wf.metadata.at("ss_network_args"), HasSubstr("\"algo\":\"" + algo + "\""));
        if (algo == "lokr") EXPECT_THAT(wf.metadata.at("ss_network_args"), HasSubstr("\"factor\":\"8\""));
        if (dora) EXPECT_THAT(wf.metadata.at("ss_network_args"), HasSubstr("\"dora_wd\":\"True\""));
        EXPECT_EQ(wf.metadata.at("ss_num_train_images"), dora ? "5" : "6");
        EXPECT_EQ(wf.metadata.at("ss_min_snr_gamma"), algo == "lokr" ? "5" : "None");
        EXPECT_EQ(wf.metadata.at("ss_noise_offset"), algo == "lokr" ? "0.05" : "None");
        if (algo == "loha") {
            EXPECT_THAT(wf.metadata.at("ss_network_args"), HasSubstr("\"rank_dropout\":\"0.1\""));
            EXPECT_THAT(wf.metadata.at("ss_network_args"), HasSubstr("\"module_dropout\":\"0.05\""));
        }
        EXPECT_EQ(wf.metadata.at("ss_network_dropout"), "None");
        int64_t keys = 0;
        const std::string key = dora ? ".dora_scale" : algo == "loha" ? ".hada_w" : algo == "full" ? ".diff" : ".lokr_w";
        for (const auto& [k, t] : wf.tensors) keys += k.find(key) != std::string::npos;
        EXPECT_GT(keys, 40);

        StableDiffusionModel m = load_stable_diffusion(kEmoji);
        widen(*m.unet);
        widen(*m.te1.model);
        LoraConfig cfg;
        cfg.algo = parse_lora_algo(algo);
        cfg.dora = dora;
        cfg.rank = 4;
        cfg.alpha = 4;
        cfg.conv_rank = 2;
        cfg.factor = o.lora_factor;
        cfg.targets = parse_lora_targets(o.lora_targets);
        LoraNetwork net(*m.unet, m.te1.model.get(), cfg, 1);
        const CheckpointFile ck = load_checkpoint_file(r.checkpoint);
        int64_t moved = 0;
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors()) {
                const Tensor& v = ck.tensors.at("model." + a->name + "." + k);
                moved += largest_diff(v, p->value) > 0;
                p->value = v;
            }
        // every adapter's zero factor (and more; full: its one tensor) trained
        EXPECT_GE(moved, (int64_t)net.adapters().size() + (algo == "full" ? 0 : 1));
        const auto [before_l, after_l] = expect_trained_run(m, net, r.exported, data.path().string());
        RecordProperty(run + "_loss", str(before_l, " -> ", after_l));
    }
    // --resume with another algorithm, factor or rank is refused by the checkpoint's configuration
    TrainOptions o = lora_options(data.path().string(), out / "loha");
    o.lora_algo = "lokr";
    o.lora_conv_rank = 2;
    o.steps = 30;
    o.resume = true;
    EXPECT_THAT(error_of([&] { train_lora(o); }), HasSubstr("a LoRA of another configuration"));
}

// LyCORIS' own loader reads the LoHa / LoKr / DoRA / Tucker files nuance trains: lycoris-lora's kohya network put
// five nuance-trained files (tests/data/lycoris_trained, tools/make_lycoris_trained_ref.py: every module found its layer) on diffusers'
// modules of the built-in model and ran its forward; nuance's loader merging the same files gives the same UNet output.
TEST(LycorisInterop, LyCORISRunsNuanceTrainedFilesAsNuanceMergesThem) {
    const std::string dir = std::string(NUANCE_TEST_DATA) + "/lycoris_trained";
    const WeightFile ref = load_safetensors(dir + "/reference.safetensors");
    const Tensor &x = ref.tensors.at("x"), &t = ref.tensors.at("t"), &ids = ref.tensors.at("ids");
    // dora: a LoRA (LoCon) with DoRA magnitudes; tucker: LoCon with Tucker cores on the 3x3 convolutions (--tucker);
    // loha_tucker: a LoHa with them (hada_t1 / hada_t2)
    // oft: LyCORIS' diag-oft (--network oft), ia3 (--network ia3 --targets ia3, LyCORIS' IA3Module on each)
    // norm: a LoRA (LoCon) with --train-norm, LyCORIS' NormModule (w_norm, b_norm) on 50 GroupNorm / LayerNorms
    // oft_cr: OFT with --constraint 1e-4 (binding on every module after 30 steps) and --rescaled
    for (const std::string algo : {"loha", "lokr", "dora", "tucker", "loha_tucker", "oft", "ia3", "glora", "boft", "full",
                                   "norm", "oft_cr"}) {
        SCOPED_TRACE(algo);
        const std::string file = dir + "/" + algo + ".safetensors";
        const LoraFile lf = load_lora(file);
        EXPECT_EQ(lf.metadata.at("ss_network_module"), "lycoris.kohya");
        int64_t cores = 0, norms = 0;
        for (const auto& mod : lf.modules) {
            norms += mod.kind == LoraKind::Norm;
            if (algo == "norm" && mod.kind == LoraKind::Norm) continue;
            EXPECT_EQ(mod.kind, algo.rfind("loha", 0) == 0 ? LoraKind::LoHa
                                : algo == "lokr"           ? LoraKind::LoKr
                                : algo.rfind("oft", 0) == 0 ? LoraKind::OFT
                                : algo == "ia3"            ? LoraKind::IA3
                                : algo == "glora"          ? LoraKind::GLoRA
                                : algo == "boft"           ? LoraKind::BOFT
                                : algo == "full"           ? LoraKind::Full
                                                           : LoraKind::LoRA);
            EXPECT_EQ(mod.dora_scale.defined(), algo == "dora");
            cores += mod.t.count("mid") > 0 || mod.t.count("t1") > 0;
            EXPECT_EQ(mod.t.count("rescale"), algo == "oft_cr" ? 1u : 0u);
            if (algo == "oft_cr") EXPECT_NEAR(mod.alpha, 1e-4, 1e-7);
        }
        EXPECT_EQ(cores, algo == "tucker" || algo == "loha_tucker" ? 26 : 0);
        EXPECT_EQ(norms, algo == "norm" ? 50 : 0);
        StableDiffusionModel m = load_stable_diffusion(kEmoji);
        widen(*m.unet);  // LyCORIS computed on f32 modules: so does this merge
        widen(*m.te1.model);
        auto forward = [&] {
            NoGradGuard ng;
            return unet_forward(*m.unet, Var(x), t, clip_encode(*m.te1.model, ids)).value();
        };
        const Tensor base = forward();
        const float tol = 2e-4f;  // f32 products in another order, 16 px latents, |eps| ~ 4
        EXPECT_LT(largest_diff(base, ref.tensors.at(algo + ".base")), tol);
        LoraMerge merge;
        const LoraApplyReport r = merge.apply(m.modules(), lf, 1.0f);
        EXPECT_EQ(r.matched, r.modules);
        EXPECT_EQ(r.modules, algo == "loha"                                     ? 92
                             : algo == "lokr" || algo == "tucker" || algo == "oft" || algo == "oft_cr" || algo == "glora" ||
                                       algo == "boft"
                                   ? 136
                             : algo == "ia3"                                       ? 53
                             : algo == "full"                                      ? 56  // (attn, no TE)
                             : algo == "norm"                                      ? 186  // (136 + 50 norms)
                                                                                   : 100);  // (100: no TE)
        const Tensor merged = forward();
        EXPECT_GT(largest_diff(merged, base), 40 * tol);  // the adapters' change is well above the tolerance
        EXPECT_LT(largest_diff(merged, ref.tensors.at(algo + ".merged")), tol);
    }
}

TEST(LoraTrainErrors, NetworkOptionsAreChecked) {
    test::TempDir data("lycoris_data"), out("lycoris_out");
    test::write_synthetic_emoji(data, 3);
    TrainOptions o = lora_options(data.path().string(), out / "r");
    o.lora_algo = "dylora";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--network 'dylora': unknown (expected lora, loha, lokr, ia3, oft, glora, boft or full)"));
    o = lora_options(data.path().string(), out / "r");
    o.lora_factor = 4;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--factor and --decompose-both are for --network lokr"));
    o.lora_algo = "loha";
    o.lora_factor = -1;
    o.lora_decompose_both = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--factor and --decompose-both are for --network lokr"));
    o.lora_algo = "lokr";
    o.lora_factor = 0;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--factor must be -1 or in 1.."));
    o.lora_factor = int64_t(1) << 40;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--factor must be -1 or in 1.."));
    o = lora_options(data.path().string(), out / "r");
    o.lora_constraint = 1e-4;  // LyCORIS' OFT options on another network
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--constraint and --rescaled are for --network oft | boft"));
    o.lora_constraint = 0;
    o.lora_rescaled = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--constraint and --rescaled are for --network oft | boft"));
    o.lora_algo = "oft";
    for (double bad : {-1e-4, std::nan(""), 1e9}) {
        o.lora_constraint = bad;
        EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--constraint")) << bad;
    }
    o = lora_options(data.path().string(), out / "r");
    o.model = "ldm";
    o.base.clear();
    o.vae = "x";
    o.train_text_encoder = false;
    o.lora_algo = "loha";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--network, --factor, --decompose-both and --dora are for --model lora"));
    o.lora_algo = "lora";
    o.lora_dora = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--dora are for --model lora"));
    o.lora_dora = false;
    o.lora_network_weights = "start.safetensors";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--network-weights is for --model lora (ldm: --init)"));
    o.lora_network_weights.clear();
    o.lora_train_norm = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--train-norm is for --model lora"));
    o.lora_train_norm = false;
    o.lora_rescaled = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--constraint and --rescaled are for --model lora"));
    o.lora_rescaled = false;
    o.lora_module_dropout = 0.1;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--module-dropout are for --model lora"));
    for (auto [field, flag] : {std::pair{&TrainOptions::lora_dropout, "--network-dropout"},
                               {&TrainOptions::lora_rank_dropout, "--rank-dropout"},
                               {&TrainOptions::lora_module_dropout, "--module-dropout"}})
        for (double bad : {-0.1, 1.0, std::nan("")}) {
            o = lora_options(data.path().string(), out / "r");
            o.*field = bad;
            EXPECT_THAT(error_of([&] { train(o); }), HasSubstr(std::string(flag) + " must be in [0, 1)")) << bad;
        }
    o = lora_options(data.path().string(), out / "r");
    o.lora_algo = "loha";
    o.lora_dropout = 0.1;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--network-dropout (kohya's neuron dropout"));
    o.lora_algo = "lora";
    o.lora_dora = true;
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("is for plain LoRA"));
    o = lora_options(data.path().string(), out / "r");
    o.lora_tucker = true;
    o.lora_targets = "attn";
    EXPECT_THAT(error_of([&] { train(o); }), HasSubstr("--tucker puts a core in the 3x3 convolutions' adapters"));
}

TEST(LoraTrainCli, TrainsAndGenerateLoadsTheResult) {
    test::TempDir data("lora_data"), out("lora_out");
    test::write_synthetic_emoji(data, 4);
    const std::string run = out / "cli";
    test::CliRun r = test::run_cli("train -q --model lora --base " + kEmoji + " --data " + data.path().string() + " -o " + run +
                                   " --steps 2 --batch 2 --rank 2 --alpha 1 --targets attn+ff --train-text-encoder");
    ASSERT_EQ(r.code, 0) << r.out;
    const std::string file = run + "/cli.safetensors";
    EXPECT_THAT(r.out, HasSubstr("exported: " + file));
    const WeightFile wf = load_safetensors(file);
    EXPECT_EQ(wf.metadata.at("ss_learning_rate"), "0.0001");  // kohya's default when --lr is not given
    r = test::run_cli("generate -q -m " + kEmoji + " -p \"thing 1\" --steps 2 --lora " + file + ":0.8 -o " +
                      out / "x.png");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_TRUE(fs::exists(out / "x.png"));
    // LyCORIS: --network lokr with LoKr's options, loaded by generate
    r = test::run_cli("train -q --model lora --base " + kEmoji + " --data " + data.path().string() + " -o " + out / "kr" +
                      " --steps 2 --batch 2 --rank 2 --network lokr --factor 4 --decompose-both");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(load_safetensors(out / "kr/kr.safetensors").metadata.at("ss_network_args"),
                HasSubstr("\"decompose_both\":\"True\""));
    r = test::run_cli("generate -q -m " + kEmoji + " -p \"thing 1\" --steps 2 --lora " + out / "kr/kr.safetensors" +
                      " -o " + out / "y.png");
    ASSERT_EQ(r.code, 0) << r.out;
    r = test::run_cli("train -q --model lora --base " + kEmoji + " --data " + data.path().string() + " -o " + run +
                      " --steps 2 --network loca");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--network 'loca'"));
    r = test::run_cli("train -q --model lora --data " + data.path().string() + " -o " + run + " --steps 2");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--base"));
    // DreamBooth-style: class images drawn first (progress as lines when stderr is not a terminal), fp16 file
    r = test::run_cli("train --model lora --base " + kEmoji + " --data " + data.path().string() + " -o " + out / "db" +
                      " --steps 2 --batch 2 --reg-data " + out / "cls" + " --class-prompt dog --num-class-images 2" +
                      " --save-precision fp16 --targets all-linear+conv --conv-rank 2 --conv-alpha 1");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("class images 1/2"));
    const std::string args = load_safetensors(out / "db/db.safetensors").metadata.at("ss_network_args");
    EXPECT_THAT(args, HasSubstr("\"conv_dim\":\"2\""));
    EXPECT_THAT(args, HasSubstr("\"conv_alpha\":\"1\""));
    EXPECT_THAT(r.out, HasSubstr("class images 2/2"));
    EXPECT_EQ(load_safetensors(out / "db/db.safetensors").metadata.at("ss_num_reg_images"), "2");
    r = test::run_cli("train -q --model lora --base " + kEmoji + " --data " + data.path().string() + " -o " + run +
                      " --steps 2 --prior-loss-weight -1 --reg-data " + out / "cls");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_THAT(r.out, HasSubstr("--prior-loss-weight"));
}

}  // namespace

// kohya's ss_clip_skip follows the conditioning the LoRA was trained on: the base's default clip skip (2 for SD2's
// 24-layer OpenCLIP text encoder, 1 for this tiny SD2, whose encoder is shallower), "None" at 1.
TEST(LoraTrain, Sd2BaseMetadataNamesTheVersionAndTheClipSkip) {
    test::TempDir data("lora_v2_data"), out("lora_v2_out");
    test::write_synthetic_emoji(data, 2);
    const std::string base = write_tiny_base(out, "sd2", 5);
    const int clip_skip = load_stable_diffusion(base).default_clip_skip;
    TrainOptions o = lora_options(data.path().string(), out / "v2");
    o.base = base;
    o.batch = 2;
    o.steps = 2;
    o.checkpoint_every = 2;
    o.lora_targets = "attn";
    o.train_text_encoder = false;
    const TrainReport r = train_lora(o);
    const WeightFile wf = load_safetensors(r.exported);
    EXPECT_EQ(wf.metadata.at("ss_base_model_version"), "sd_v2");
    EXPECT_EQ(wf.metadata.at("ss_v2"), "True");
    EXPECT_EQ(wf.metadata.at("ss_clip_skip"), clip_skip > 1 ? std::to_string(clip_skip) : std::string("None"));
}


// --network-weights (kohya's network_weights): every algorithm's saved file starts a fresh network of the same
// configuration at the saved tensors and alphas (the run's own --alpha does not win, as kohya loads alpha with the
// weights), through the loader's name matching.
TEST(LoraNetworkWeights, EveryAlgorithmStartsFromItsSavedFile) {
    struct Case { LoraAlgo algo; int64_t rank; bool dora = false; bool tucker = false; bool norm = false; bool oft_cr = false; };
    for (const Case c : {Case{LoraAlgo::LoRA, 2}, Case{LoraAlgo::LoRA, 2, true}, Case{LoraAlgo::LoRA, 2, false, true},
                         Case{LoraAlgo::LoHa, 2}, Case{LoraAlgo::LoKr, 2}, Case{LoraAlgo::IA3, 1},
                         Case{LoraAlgo::OFT, 4}, Case{LoraAlgo::GLoRA, 2}, Case{LoraAlgo::BOFT, 4},
                         Case{LoraAlgo::Full, 1}, Case{LoraAlgo::LoHa, 2, false, false, true},
                         Case{LoraAlgo::OFT, 4, false, false, false, true}, Case{LoraAlgo::BOFT, 4, false, false, false, true}}) {
        SCOPED_TRACE(str(lora_algo_name(c.algo), c.dora ? " dora" : "", c.tucker ? " tucker" : "", c.norm ? " norm" : "",
                         c.oft_cr ? " constraint rescaled" : ""));
        TinySd15 m;
        widen(*m.unet);
        widen(*m.te);
        LoraConfig cfg;
        cfg.algo = c.algo;
        cfg.rank = c.rank;
        cfg.alpha = 1;
        cfg.dora = c.dora;
        cfg.tucker = c.tucker;
        cfg.train_norm = c.norm;
        cfg.oft_constraint = c.oft_cr ? 0.05 : 0;
        cfg.oft_rescaled = c.oft_cr;
        cfg.conv_rank = c.tucker ? 3 : c.algo == LoraAlgo::BOFT ? 4 : 1;
        cfg.conv_alpha = 0.5;
        cfg.targets = parse_lora_targets("all-linear+conv");
        LoraNetwork saved(*m.unet, m.te.get(), cfg, 1);
        uint64_t seed = 70;
        for (auto& a : saved.adapters())
            for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), ++seed, 0.3f);
        test::TempDir dir("lora_netw");
        const std::string path = dir / "start.safetensors";
        saved.save_kohya(path, {}, DType::F32);
        cfg.alpha = 3;  // the run's own: the file's wins
        cfg.conv_alpha = 2;
        if (c.oft_cr) cfg.oft_constraint = 0.5;  // so does the file's OFT constraint
        LoraNetwork fresh(*m.unet, m.te.get(), cfg, 2);
        const LoraFile lf = load_lora(path);
        const LoraComponents comps{{"unet", m.unet.get()}, {"text_encoder", m.te.get()}};
        const LoraNetwork::InitReport r = fresh.init_from(lf, lora_module_targets(comps, lf));
        EXPECT_EQ(r.adapters, (int64_t)saved.adapters().size());
        EXPECT_EQ(r.fresh, 0);
        EXPECT_TRUE(r.unused.empty());
        ASSERT_EQ(fresh.adapters().size(), saved.adapters().size());
        for (size_t i = 0; i < saved.adapters().size(); ++i) {
            const auto &a = *saved.adapters()[i], &b = *fresh.adapters()[i];
            ASSERT_EQ(a.name, b.name);
            if (c.algo != LoraAlgo::OFT && c.algo != LoraAlgo::BOFT && c.algo != LoraAlgo::IA3 && c.algo != LoraAlgo::Full)
                EXPECT_DOUBLE_EQ(b.alpha, a.alpha) << b.name;
            EXPECT_FLOAT_EQ((float)b.constraint, (float)a.constraint) << b.name;
            const auto ta = a.tensors(), tb = b.tensors();
            ASSERT_EQ(ta.size(), tb.size());
            for (size_t k = 0; k < ta.size(); ++k) EXPECT_EQ(largest_diff(ta[k].second->value, tb[k].second->value), 0.0f) << b.name << " " << tb[k].first;
        }
        if (c.oft_cr) {  // a rescaled file into a run without --rescaled, and the other way round: refused by name
            cfg.oft_rescaled = false;
            LoraNetwork plain(*m.unet, m.te.get(), cfg, 2);
            EXPECT_THAT(error_of([&] { plain.init_from(lf, lora_module_targets(comps, lf)); }),
                        HasSubstr("factor this run's " + std::string(lora_algo_name(c.algo)) + " adapter on"));
            EXPECT_THAT(error_of([&] { plain.init_from(lf, lora_module_targets(comps, lf)); }), HasSubstr("add --rescaled"));
            cfg.oft_rescaled = true;
            cfg.oft_constraint = 0;
            LoraNetwork unscaled(*m.unet, m.te.get(), cfg, 2);
            const std::string p2 = dir / "plain.safetensors";
            plain.save_kohya(p2, {}, DType::F32);
            const LoraFile lf2 = load_lora(p2);
            EXPECT_THAT(error_of([&] { unscaled.init_from(lf2, lora_module_targets(comps, lf2)); }),
                        HasSubstr("has no rescale"));
            EXPECT_THAT(error_of([&] { unscaled.init_from(lf2, lora_module_targets(comps, lf2)); }),
                        HasSubstr("drop --rescaled"));
        }
        if (c.norm) {  // the same file into a run without --train-norm: its norms are on no adapter, and say so
            cfg.train_norm = false;
            LoraNetwork plain(*m.unet, m.te.get(), cfg, 2);
            const LoraNetwork::InitReport rp = plain.init_from(lf, lora_module_targets(comps, lf));
            EXPECT_EQ(rp.adapters, (int64_t)plain.adapters().size());
            ASSERT_EQ(rp.unused.size(), saved.adapters().size() - plain.adapters().size());
            EXPECT_THAT(rp.unused.front(), HasSubstr("norm"));
        }
    }
}

// The same from a PEFT-named file (unet.<module>.lora_A / lora_B, no alphas: scale 1), and what is refused, with
// nothing changed: another rank, another algorithm, DoRA on one side, a file for layers this run does not adapt.
TEST(LoraNetworkWeights, OtherNamingsAndWhatIsRefused) {
    TinySd15 m;
    widen(*m.unet);
    widen(*m.te);
    LoraConfig cfg;
    cfg.rank = 2;
    cfg.alpha = 1;
    cfg.targets = parse_lora_targets("attn");
    LoraNetwork saved(*m.unet, nullptr, cfg, 1);
    uint64_t seed = 90;
    std::vector<std::pair<std::string, Tensor>> peft;
    for (auto& a : saved.adapters()) {
        for (auto& [k, p] : a->tensors()) p->value = randn(p->value.shape(), ++seed, 0.3f);
        peft.emplace_back("unet." + a->module + ".lora_A.weight", a->down.value);
        peft.emplace_back("unet." + a->module + ".lora_B.weight", a->up.value);
    }
    test::TempDir dir("lora_netw2");
    const std::string peft_path = dir / "peft.safetensors", kohya = dir / "kohya.safetensors";
    save_safetensors(peft_path, peft, {});
    saved.save_kohya(kohya, {}, DType::F32);
    const LoraComponents comps{{"unet", m.unet.get()}};
    {
        LoraNetwork fresh(*m.unet, nullptr, cfg, 2);
        const LoraFile lf = load_lora(peft_path);
        const LoraNetwork::InitReport r = fresh.init_from(lf, lora_module_targets(comps, lf));
        EXPECT_EQ(r.adapters, (int64_t)saved.adapters().size());
        for (size_t i = 0; i < saved.adapters().size(); ++i) {
            EXPECT_EQ(largest_diff(fresh.adapters()[i]->up.value, saved.adapters()[i]->up.value), 0.0f);
            EXPECT_EQ(largest_diff(fresh.adapters()[i]->down.value, saved.adapters()[i]->down.value), 0.0f);
            EXPECT_DOUBLE_EQ(fresh.adapters()[i]->alpha, 2.0);  // no alpha in the file: alpha = rank
        }
    }
    const LoraFile lf = load_lora(kohya);
    auto refused = [&](LoraConfig c, bool te, const char* want) {
        LoraNetwork net(*m.unet, te ? m.te.get() : nullptr, c, 3);
        std::vector<Tensor> before;
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors()) before.push_back(p->value);
        LoraComponents cs = comps;
        if (te) cs.emplace_back("text_encoder", m.te.get());
        EXPECT_THAT(error_of([&] { net.init_from(lf, lora_module_targets(cs, lf)); }), HasSubstr(want));
        size_t i = 0;
        for (auto& a : net.adapters())
            for (auto& [k, p] : a->tensors()) EXPECT_EQ(p->value.raw(), before[i++].raw()) << a->name << " " << k;
    };
    LoraConfig c = cfg;
    c.rank = 4;
    refused(c, false, "(--rank 4");
    c = cfg;
    c.algo = LoraAlgo::LoHa;
    refused(c, false, "is LoRA, this run trains loha (--network)");
    c = cfg;
    c.dora = true;
    refused(c, false, "has no DoRA magnitude, this run trains one (--dora)");
    // Matched against the text encoder alone, the file's UNet modules land nowhere: refused.
    LoraNetwork with_te(*m.unet, m.te.get(), cfg, 4);
    EXPECT_THAT(error_of([&] { with_te.init_from(lf, lora_module_targets({{"text_encoder", m.te.get()}}, lf)); }),
                HasSubstr("modules adapts a layer this run trains"));
    // A wider run (attn + ff): the file's adapters start from it, the feed-forward ones stay fresh.
    c = cfg;
    c.targets = parse_lora_targets("attn+ff");
    LoraNetwork wider(*m.unet, nullptr, c, 5);
    const LoraNetwork::InitReport r = wider.init_from(lf, lora_module_targets(comps, lf));
    EXPECT_EQ(r.adapters, (int64_t)saved.adapters().size());
    EXPECT_GT(r.fresh, 0);
}

// End to end: a run started from another run's file with lr 0 exports that file's tensors and alphas, whatever its
// own --alpha; a file that is not there fails the run.
TEST(LoraTrain, NetworkWeightsStartTheRun) {
    test::TempDir data("lora_nw_data"), out("lora_nw_out");
    test::write_synthetic_emoji(data, 6);
    TrainOptions o = lora_options(data.path().string(), out / "first");
    o.steps = 2;
    o.lora_targets = "attn";
    o.train_text_encoder = false;
    const TrainReport first = train_lora(o);
    TrainOptions again = o;
    again.output = out / "second";
    again.lora_network_weights = first.exported;
    again.lora_alpha = 1;
    again.lr = 1e-9f;  // (AdamW moves each value by about lr per step)
    again.min_lr = 1e-9f;
    again.weight_decay = 0;
    const TrainReport second = train_lora(again);
    const WeightFile a = load_safetensors(first.exported), b = load_safetensors(second.exported);
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    int alphas = 0;
    for (const auto& [k, t] : a.tensors) {
        const bool alpha = k.size() > 6 && k.compare(k.size() - 6, 6, ".alpha") == 0;
        alphas += alpha;
        if (alpha) EXPECT_EQ(largest_diff(t, b.tensors.at(k)), 0.0f) << k;  // 4, not the run's 1
        else EXPECT_LT(largest_diff(t, b.tensors.at(k)), 1e-6f) << k;
    }
    EXPECT_GT(alphas, 4);
    again.lora_network_weights = out / "missing.safetensors";
    EXPECT_FALSE(error_of([&] { train_lora(again); }).empty());
}

}  // namespace nuance
