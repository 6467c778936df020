// Quantization-aware training (train/qat.h): the fake-quantized weights are bit for bit what `nuance quantize`
// writes for the exported model, the gradient is taken at them and applied to the master weights (straight-through),
// and `nuance train --init MODEL --qat TYPE` fine-tunes an exported model; the error paths.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "../test_util.h"
#include "autograd/param_grads.h"
#include "core/mt19937.h"
#include "data_test_util.h"
#include "io/gguf.h"
#include "io/gguf_quantize.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "nn/layers.h"
#include "autograd/functions.h"
#include "train/optim.h"
#include "train/checkpoint.h"
#include "train/model_graph.h"
#include "train/qat.h"
#include "train/train_arch.h"
#include "train/train_options.h"
#include "train/trainer.h"

namespace nuance {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Rows of 32 and 64 values: linear layers quantize in Q8_0/Q4_0 blocks; 3x3 convs by the sd1 shape fix.
const nlohmann::json kQatUnet = {{"block_out_channels", {32, 64}}, {"attention_levels", {false, true}}, {"heads", 2},
                                 {"norm_num_groups", 8}};
const nlohmann::json kQatTe = {{"hidden", 32}, {"layers", 1}, {"heads", 2}, {"intermediate", 64}};

void fill_random(Module& m, uint64_t seed) {
    TorchCpuRng rng(seed);
    for_each_param(m, [&](const std::string&, Param& p) {
        Tensor t = rng.randn(p.shape);
        float* d = t.data<float>();
        for (int64_t i = 0; i < t.numel(); ++i) d[i] *= 0.2f;
        p.value = t;
    });
}

std::vector<float> values(const Tensor& t) { return t.f32().contiguous().to_vector(); }

// For each recipe: after apply(), every parameter FakeQuantizer took holds exactly what the .gguf that `nuance
// quantize` writes from the exported (f16) UNet dequantizes to; the others are untouched; restore() puts back the
// very master tensors.
TEST(Qat, FakeQuantizedWeightsAreTheQuantizedFilesValues) {
    test::TempDir d("qat_file");
    UNet2DConditionModel unet(unet_config_from_arch(kQatUnet, 4, 32));
    fill_random(unet, 3);
    ParamGrads params(unet, "unet.");
    write_component(d / "unet", unet, "diffusion_pytorch_model.safetensors", nlohmann::json::object());
    const WeightFile exported = load_safetensors(d / "unet/diffusion_pytorch_model.safetensors");
    for (const char* name : {"q8_0", "q4_0", "q5_1", "q4_k_m", "q3_k_m", "bf16"}) {
        SCOPED_TRACE(name);
        const QuantizeRecipe r = *qat_recipe(name);
        std::map<std::string, Tensor> master;
        for (auto& e : params.entries()) master[e.name] = e.param->value;
        FakeQuantizer fq(params, "unet.", r);
        const std::string out = d / (std::string(name) + ".gguf");
        const GgufQuantizeSummary s = quantize_to_gguf(exported, out, r);
        int64_t quantized = 0;
        for (const auto& [type, n] : s.tensors_per_type)
            if (type != "F32" && type != "F16") quantized += n;
        EXPECT_EQ((int64_t)fq.size(), quantized);
        EXPECT_EQ(fq.tensors_per_type().size(), s.tensors_per_type.size() - s.tensors_per_type.count("F32") -
                                                    s.tensors_per_type.count("F16"));
        fq.apply();
        const GgufFile g = read_gguf(out);
        const WeightFile back = load_gguf(out);
        int64_t changed = 0;
        for (const auto& t : g.tensors) {
            Param* param = nullptr;
            for (auto& e : params.entries())
                if (e.name == "unet." + t.name) param = e.param;
            ASSERT_NE(param, nullptr) << t.name;
            const GgmlType type = (GgmlType)t.type;
            if (type == GgmlType::F32 || type == GgmlType::F16) {
                EXPECT_EQ(param->value.storage(), master.at("unet." + t.name).storage()) << t.name;
                continue;
            }
            EXPECT_EQ(values(param->value), values(back.tensors.at(t.name))) << t.name << " " << ggml_type_info(type).name;
            EXPECT_EQ(param->value.shape(), param->shape);
            ++changed;
        }
        EXPECT_EQ(changed, quantized);
        EXPECT_GT(changed, 0);
        fq.restore();
        for (auto& e : params.entries()) EXPECT_EQ(e.param->value.storage(), master.at(e.name).storage()) << e.name;
    }
    // A mixed recipe gives the value projections and the feed-forward outputs a wider type than the rest.
    FakeQuantizer km(params, "unet.", *qat_recipe("q4_k_m"));
    EXPECT_GE(km.tensors_per_type().size(), 2u);
}

// The straight-through estimator: the gradient the loop applies is the loss's gradient at the fake-quantized
// weights (the same as a model that holds them), and the optimizer then updates the master weights.
TEST(Qat, GradientIsTakenAtTheQuantizedWeightsAndTheMasterIsKept) {
    const UNetConfig cfg = unet_config_from_arch(kQatUnet, 4, 32);
    UNet2DConditionModel a(cfg), b(cfg);
    fill_random(a, 5);
    TorchCpuRng rng(9);
    const Tensor x = rng.randn({1, 4, 8, 8}), ctx = rng.randn({1, 3, 32}), target = rng.randn({1, 4, 8, 8});
    const Tensor t = Tensor::from_vector(std::vector<float>{500.0f}, {1});
    ParamGrads pa(a, "unet.");
    FakeQuantizer fq(pa, "unet.", *qat_recipe("q4_0"));
    std::map<std::string, Tensor> master;
    for (auto& e : pa.entries()) master[e.name] = e.param->value;
    // b holds a's fake-quantized weights as its own.
    fq.apply();
    {
        std::map<std::string, Tensor> fqv;
        for (auto& e : pa.entries()) fqv[e.name.substr(5)] = e.param->value.clone();
        for_each_param(b, [&](const std::string& n, Param& p) { p.value = fqv.at(n); });
    }
    ParamGrads pb(b, "unet.");
    for (ParamGrads* pg : {&pa, &pb}) {
        ParamGrads::Bind bind(*pg);
        UNet2DConditionModel& m = pg == &pa ? a : b;
        backward(mse_loss(unet_forward(m, Var(x), t, Var(ctx)), Var(target)));
    }
    fq.restore();
    double max_gap = 0;
    for (size_t i = 0; i < pa.entries().size(); ++i) {
        const auto& ea = pa.entries()[i];
        ASSERT_TRUE(ea.leaf.grad().defined()) << ea.name;
        EXPECT_EQ(values(ea.leaf.grad()), values(pb.entries()[i].leaf.grad())) << ea.name;
        EXPECT_EQ(ea.param->value.storage(), master.at(ea.name).storage()) << ea.name;
        const std::vector<float> m = values(ea.param->value), q = values(pb.entries()[i].param->value);
        for (size_t k = 0; k < m.size(); ++k) max_gap = std::max(max_gap, (double)std::fabs(m[k] - q[k]));
    }
    EXPECT_GT(max_gap, 1e-3);  // Q4_0 moved the weights: the two models did differ from the masters
    // The optimizer steps the masters: an update of lr·sign(g) (AdamW's first step) from the f32 values.
    AdamWOptions ao;
    ao.lr = 1e-3f;
    ao.weight_decay = 0;
    AdamW opt(pa, ao);
    const std::vector<float> before = values(pa.entries()[1].param->value);
    opt.step();
    const std::vector<float> after = values(pa.entries()[1].param->value);
    for (size_t k = 0; k < before.size(); ++k) EXPECT_NEAR(std::fabs(after[k] - before[k]), 1e-3, 2e-5) << k;
}

// 8 coloured 8x8 squares with captions.
void write_squares(const std::string& dir) {
    const uint8_t rgb[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 50, 220}, {230, 220, 30}};
    const char* names[] = {"red", "green", "blue", "yellow"};
    for (int i = 0; i < 8; ++i) {
        Image img = test::gradient_image(8, 8);
        for (size_t p = 0; p < img.pixels.size(); p += 3)
            for (int c = 0; c < 3; ++c) img.pixels[p + c] = rgb[i % 4][c];
        test::write_image(dir + "/img" + std::to_string(i) + ".png", img);
        test::write_text(dir + "/img" + std::to_string(i) + ".txt", std::string(names[i % 4]) + " square");
    }
}

TrainOptions tiny(const std::string& model, const std::string& data, const std::string& out) {
    TrainOptions o;
    o.model = model;
    o.data = data;
    o.output = out;
    o.resolution = 8;
    o.batch = 4;
    o.steps = 2;
    o.warmup = 0;
    o.lr = 1e-3f;
    o.checkpoint_every = 2;
    o.seed = 7;
    return o;
}

// <d>/data (coloured squares), a tiny VAE <d>/vae and a 2-step ldm on it exported to <d>/base/model.
void train_base(const test::TempDir& d, const std::string& prediction) {
    write_squares(d / "data");
    TrainOptions vo = tiny("vae", d / "data", d / "vae");
    vo.arch = {{"vae", {{"block_out_channels", {8, 16}}, {"norm_num_groups", 4}}}};
    train(vo);
    TrainOptions lo = tiny("ldm", d / "data", d / "base");
    lo.vae = d / "vae";
    lo.arch = {{"unet", kQatUnet}, {"text_encoder", kQatTe}};
    lo.prediction = prediction;
    train(lo);
}

// A trained model, fine-tuned with --init and --qat: the run starts from its weights and architecture (and its
// VAE), records the QAT type in the export, and the fine-tuned model quantizes.
TEST(Qat, InitFineTunesAnExportedModelWithQat) {
    test::TempDir d("qat_init");
    train_base(d, "epsilon");

    // generation defaults in the base (as the shipped built-in model has them): the fine-tuned export keeps them
    const std::string base_index = d / "base/model/model_index.json";
    nlohmann::json bi = read_json_object(base_index);
    const nlohmann::json defaults = {{"cfg_scale", 5.0}, {"prompt", "grinning face"}, {"sampler", "euler_a"}, {"steps", 20}};
    bi["_nuance"]["defaults"] = defaults;
    std::ofstream(base_index) << bi.dump(2);

    TrainOptions q = tiny("ldm", d / "data", d / "qat");
    q.init = d / "base/model";
    q.qat = "int8";
    q.steps = 1;
    q.lr = 1e-7f;
    q.ema_decay = 0;
    const TrainReport r = train(q);
    // The loss was the quantized model's: a run without --qat from the same start sees another one.
    TrainOptions plain = q;
    plain.output = d / "plain";
    plain.qat.clear();
    const TrainReport rp = train(plain);
    EXPECT_NE(r.first_loss, rp.first_loss);
    EXPECT_NEAR(r.first_loss, rp.first_loss, 0.05 * rp.first_loss);
    const nlohmann::json idx = read_json_object(r.exported + "/model_index.json");
    EXPECT_EQ(idx["_nuance"]["qat"]["type"], "q8_0");
    EXPECT_GT(idx["_nuance"]["qat"]["tensors"]["Q8_0"].get<int64_t>(), 0);
    EXPECT_EQ(idx["_nuance"]["arch"], read_json_object(d / "base/model/model_index.json")["_nuance"]["arch"]);
    EXPECT_EQ(idx["_nuance"]["init"]["trained_steps"], 2);
    EXPECT_EQ(idx["_nuance"]["defaults"], defaults);
    // One step at lr 1e-7 from the base: the exported weights are the base's (f16 both).
    for (const char* part : {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"}) {
        const WeightFile base = load_safetensors(d / (std::string("base/model/") + part));
        const WeightFile tuned = load_safetensors(r.exported + "/" + part);
        ASSERT_EQ(base.tensors.size(), tuned.tensors.size());
        for (const auto& [k, v] : base.tensors) {
            const std::vector<float> a = values(v), b = values(tuned.tensors.at(k));
            for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 2e-3 + 1e-3 * std::fabs(a[i])) << k;
        }
    }
    const std::string out = d / "qat.gguf";
    quantize_to_gguf(load_safetensors(r.exported + "/unet/diffusion_pytorch_model.safetensors"), out,
                     *qat_recipe("q8_0"));
    EXPECT_TRUE(fs::exists(out));
    // Resume continues the QAT run.
    q.steps = 2;
    q.resume = true;
    EXPECT_EQ(train(q).steps, 1);
}

TEST(QatErrors, BadTypesModelsAndInitFoldersAreNamed) {
    test::TempDir d("qat_err");
    TrainOptions o = tiny("ldm", d / "data", d / "run");
    o.vae = d / "vae";
    o.qat = "q9_9";
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("--qat 'q9_9' is not a quantization type"));
    o.qat = "f32";
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("is not a quantization type"));
    o.qat = "q4_0";
    o.model = "vae";
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("--qat is for --model ldm"));
    o.model = "ldm";
    o.init = d / "m";
    o.arch = {{"unet", {{"heads", 2}}}};
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("drop --arch"));
    o.arch = nlohmann::json::object();
    o.model = "vae";
    o.qat.clear();
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("--init is for --model ldm"));
    o.model = "ldm";
    o.vae.clear();
    o.init.clear();
    EXPECT_THAT(test::error_of([&] { validate_train_options(o); }), HasSubstr("or --init"));

    // --init folders: missing, not nuance's, another objective, weights that do not match.
    train_base(d, "v_prediction");
    TrainOptions q = tiny("ldm", d / "data", d / "run");
    q.vae = d / "vae";
    q.init = d / "nothing";
    EXPECT_THAT(test::error_of([&] { train(q); }), HasSubstr("is not a folder"));
    test::write_text(d / "foreign/model_index.json", R"({"_class_name": "StableDiffusionPipeline"})");
    q.init = d / "foreign";
    EXPECT_THAT(test::error_of([&] { train(q); }), HasSubstr("no _nuance.arch"));
    q.init = d / "base/model";
    EXPECT_THAT(test::error_of([&] { train(q); }), HasSubstr("was trained for v_prediction; pass --prediction"));
    q.prediction = "v_prediction";
    // A weights file with a tensor missing.
    const std::string w = d / "base/model/text_encoder/model.safetensors";
    WeightFile te = load_safetensors(w);
    std::vector<std::pair<std::string, Tensor>> kept;
    for (const auto& [k, v] : te.tensors)
        if (k.find("final_layer_norm.weight") == std::string::npos) kept.emplace_back(k, v.clone());
    te = WeightFile();
    save_safetensors(w, kept, {});
    EXPECT_THAT(test::error_of([&] { train(q); }), HasSubstr("has no tensor"));
}

TEST(QatErrors, NothingToQuantizeAndUnknownPrefixAreNamed) {
    struct Tiny : Module {
        Linear fc{8, 8};
        void visit(ParamVisitor& v) override { v("fc", fc); }
    } m;
    fill_random(m, 1);
    ParamGrads p(m, "unet.");
    EXPECT_THAT(test::error_of([&] { FakeQuantizer(p, "unet.", *qat_recipe("q8_0")); }),
                HasSubstr("would quantize none"));
    EXPECT_THAT(test::error_of([&] { FakeQuantizer(p, "transformer.", *qat_recipe("q8_0")); }),
                HasSubstr("no parameters named"));
    EXPECT_FALSE(qat_recipe("q9").has_value());
    EXPECT_EQ(qat_recipe("INT8")->name, "q8_0");
    EXPECT_THAT(test::error_of([&] { fake_quantize(Tensor::zeros({4, 32}), GgmlType::Q8_0, {2, 32}); }),
                HasSubstr("cannot be stored as"));
}

}  // namespace
}  // namespace nuance
