// ControlNet files: every layout load_controlnet reads gives the same network (original control_model.*, diffusers
// single file, diffusers folder, ControlNet 1.0 difference files), mismatched models are named errors, and hostile
// files are refused before anything is allocated for them.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "io/safetensors.h"
#include "models/controlnet/control_stack.h"
#include "models/controlnet/controlnet_load.h"
#include "models/controlnet/controlnet_random.h"
#include "models/model_family.h"
#include "models/random_model.h"
#include "ops/ops.h"
#include "pipelines/generate.h"
#include "../../test_util.h"

using namespace nuance;
namespace fs = std::filesystem;

namespace {

class ControlNetFiles : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = fs::path(NUANCE_SCRATCH_DIR) / ("nuance_controlnet_" + std::to_string(::getpid()));
        fs::create_directories(dir_);
        for (const std::string fam : {"sd15", "sdxl"}) {
            RandomModelOptions o;
            o.family = fam;
            o.tiny = true;
            o.dtype = DType::F32;
            write_random_checkpoint(path(fam + ".safetensors"), o);
        }
        sd15_ = load_model(path("sd15.safetensors")).release();
        sdxl_ = load_model(path("sdxl.safetensors")).release();
    }
    static void TearDownTestSuite() {
        delete sd15_;
        delete sdxl_;
        fs::remove_all(dir_);
    }
    static std::string path(const std::string& f) { return (dir_ / f).string(); }
    static inline fs::path dir_;
    static inline DiffusionModel* sd15_ = nullptr;
    static inline DiffusionModel* sdxl_ = nullptr;
};

ControlResiduals run(const ControlNetModel& cn, int64_t ctx_dim, bool xl) {
    auto rng = make_rng(RngKind::Cpu, 3);
    const Tensor x = rng->randn({1, 4, 8, 8}), ctx = rng->randn({1, 77, ctx_dim});
    const Tensor hint = rng->randn({1, 3, 64, 64}) * 0.2f + 0.5f;
    UNetExtra e;
    if (xl) {
        e.text_embeds = rng->randn({1, cn.config().unet.add_in_dim - 6 * cn.config().unet.addition_time_embed_dim});
        e.time_ids = Tensor::from_vector({64, 64, 0, 0, 64, 64}, {1, 6});
    }
    return cn.forward(x, Tensor::scalar(500.0f), ctx, hint, e);
}

// Renamed layouts are bit-exact; a difference file adds (cn - base) + base in fp32: 1e-5 of the magnitudes.
void expect_same(const ControlResiduals& a, const ControlResiduals& b, const std::string& what, double rel) {
    ASSERT_EQ(a.down.size(), b.down.size()) << what;
    for (size_t i = 0; i < a.down.size(); ++i)
        EXPECT_LE(max_abs(a.down[i] - b.down[i]), rel * std::max(1.0, (double)max_abs(a.down[i]))) << what << " down " << i;
    EXPECT_LE(max_abs(a.mid - b.mid), rel * std::max(1.0, (double)max_abs(a.mid))) << what << " mid";
}

}  // namespace

TEST_F(ControlNetFiles, EveryLayoutGivesTheSameNetwork) {
    for (DiffusionModel* m : {sd15_, sdxl_}) {
        const std::string fam = m->family_name();
        write_random_controlnet(*m, path(fam + "_cn.safetensors"), ControlNetLayout::Diffusers, 9);
        write_random_controlnet(*m, path(fam + "_cn_orig.safetensors"), ControlNetLayout::Original, 9);
        write_random_controlnet(*m, path(fam + "_cn_diff.safetensors"), ControlNetLayout::Difference, 9);
        fs::create_directories(path(fam + "_folder/controlnet"));
        fs::copy_file(path(fam + "_cn.safetensors"), path(fam + "_folder/controlnet/diffusion_pytorch_model.safetensors"));
        std::ofstream(path(fam + "_folder/controlnet/config.json")) << R"({"_class_name": "ControlNetModel"})";
        const int64_t ctx = fam == "sdxl" ? 192 : 64;
        const auto ref = m->load_control_net(path(fam + "_cn.safetensors"), "--control-net");
        EXPECT_EQ(controlnet_family(ref->config()), fam == "sdxl" ? "SDXL" : "custom");
        const ControlResiduals want = run(*ref, ctx, fam == "sdxl");
        EXPECT_EQ((int64_t)want.down.size(), ref->num_down_residuals());
        for (const std::string f : {"_cn_orig.safetensors", "_cn_diff.safetensors", "_folder"})
            expect_same(want, run(*m->load_control_net(path(fam + f), "--control-net"), ctx, fam == "sdxl"), fam + f,
                        std::string(f) == "_cn_diff.safetensors" ? 1e-5 : 0.0);
    }
}

TEST_F(ControlNetFiles, ForeignModelsAreNamedBothWays) {
    write_random_controlnet(*sd15_, path("for15.safetensors"), ControlNetLayout::Original, 1);
    write_random_controlnet(*sdxl_, path("forxl.safetensors"), ControlNetLayout::Diffusers, 1);
    EXPECT_EQ(test::error_of([&] { sdxl_->load_control_net(path("for15.safetensors"), "--control-net"); }),
              "--control-net 'for15.safetensors' is a ControlNet for custom (context 64, channels [32, 64, 64, 64]) "
              "but the model 'sdxl' (sdxl) has a UNet with context 192, channels [32, 64, 128], text_time: use a "
              "ControlNet made for this model");
    EXPECT_EQ(test::error_of([&] { sd15_->load_control_net(path("forxl.safetensors"), "--control-net"); }),
              "--control-net 'forxl.safetensors' is a ControlNet for SDXL (context 192, channels [32, 64, 128], "
              "text_time) but the model 'sd15' (sd15) has a UNet with context 64, channels [32, 64, 64, 64]: use a "
              "ControlNet made for this model");
    // generate() checks nets given by API callers the same way
    GenerateParams p;
    p.prompt = "x";
    p.width = p.height = 64;
    ControlUnit u;
    u.net = sdxl_->load_control_net(path("forxl.safetensors"), "--control-net");
    u.name = "forxl";
    u.image = Image{64, 64, 3, std::vector<uint8_t>(64 * 64 * 3, 0)};
    p.control = {u};
    EXPECT_EQ(test::error_of([&] { validate_params(*sd15_, p); }),
              "ControlNet 0 'forxl' is a ControlNet for SDXL (context 192, channels [32, 64, 128], text_time) but the "
              "model 'sd15' (sd15) has a UNet with context 64, channels [32, 64, 64, 64]: use a ControlNet made for "
              "this model");
}

TEST_F(ControlNetFiles, DifferenceFileNeedsItsModel) {
    write_random_controlnet(*sd15_, path("d.safetensors"), ControlNetLayout::Difference, 2);
    EXPECT_EQ(test::error_of([&] { load_controlnet(path("d.safetensors")); }),
              "ControlNet '" + path("d.safetensors") +
                  "' is a difference file (it holds deltas on top of a base model's UNet): load it together with the "
                  "SD model it was made from");
}

TEST_F(ControlNetFiles, HostileAndForeignFilesAreRefused) {
    // not a ControlNet: a whole SD checkpoint
    EXPECT_EQ(test::error_of([&] { sd15_->load_control_net(path("sd15.safetensors"), "--control-net"); }),
              "--control-net '" + path("sd15.safetensors") +
                  "' is not a ControlNet: no control_model.input_hint_block.* nor controlnet_cond_embedding.* tensors "
                  "(first tensor: 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight')");
    EXPECT_EQ(test::error_of([&] { sd15_->load_control_net(path("missing.safetensors"), "--control-net"); }),
              "--control-net '" + path("missing.safetensors") + "' does not exist");
    // garbage bytes
    std::ofstream(path("garbage.safetensors")) << "not a checkpoint at all";
    EXPECT_NE(test::error_of([&] { sd15_->load_control_net(path("garbage.safetensors"), "--control-net"); })
                  .find("garbage.safetensors"),
              std::string::npos);
    // a good file plus a stray tensor (each test runs alone under ctest: it makes its own files)
    write_random_controlnet(*sd15_, path("for15.safetensors"), ControlNetLayout::Original, 1);
    WeightFile wf = load_safetensors(path("for15.safetensors"));
    std::vector<std::pair<std::string, Tensor>> t(wf.tensors.begin(), wf.tensors.end());
    t.emplace_back("control_model.extra.weight", Tensor::zeros({2}));
    save_safetensors(path("stray.safetensors"), t);
    EXPECT_EQ(test::error_of([&] { sd15_->load_control_net(path("stray.safetensors"), "--control-net"); }),
              "unet: unrecognised tensor 'model.diffusion_model.extra.weight'");
    // a T2I-Adapter
    save_safetensors(path("adapter.safetensors"), {{"body.0.block1.weight", Tensor::zeros({2, 2, 3, 3})}});
    EXPECT_EQ(test::error_of([&] { sd15_->load_control_net(path("adapter.safetensors"), "--control-net"); }),
              "--control-net '" + path("adapter.safetensors") + "' is a T2I-Adapter, not a ControlNet: not supported");
}

// Config detection refuses odd structures from the names and shapes alone (no tensor data is read or allocated).
TEST(ControlNetConfig, HostileStructuresAreNamed) {
    std::map<std::string, Tensor> t;
    EXPECT_EQ(test::error_of([&] { ControlNetConfig::detect(t); }), "ControlNet checkpoint is missing tensor 'conv_in.weight'");
    // shapes only: zero-stride views of one element stand for huge tensors without memory
    auto big = [](Shape s) { return Tensor::zeros({1}).reshape({1, 1, 1, 1}).expand(s); };
    t["conv_in.weight"] = big({8, 4, 3, 3});
    t["time_embedding.linear_1.weight"] = Tensor::zeros({32, 8});
    EXPECT_EQ(test::error_of([&] { ControlNetConfig::detect(t); }), "ControlNet checkpoint has 0 down blocks (expected 1..8)");
    for (int i = 0; i < 9; ++i) t[str("down_blocks.", i, ".resnets.0.conv1.weight")] = big({8, 8, 3, 3});
    EXPECT_EQ(test::error_of([&] { ControlNetConfig::detect(t); }), "ControlNet checkpoint has 9 down blocks (expected 1..8)");
    for (int i = 1; i < 9; ++i) t.erase(str("down_blocks.", i, ".resnets.0.conv1.weight"));
    t["controlnet_cond_embedding.conv_in.weight"] = big({16, 3, 3, 3});
    t["controlnet_cond_embedding.blocks.0.weight"] = big({16, 16, 3, 3});
    EXPECT_EQ(test::error_of([&] { ControlNetConfig::detect(t); }),
              "ControlNet conditioning embedding has 1 blocks (expected an even number up to 16)");
    t["controlnet_cond_embedding.blocks.1.weight"] = big({1000000000, 16, 3, 3});
    EXPECT_EQ(test::error_of([&] { ControlNetConfig::detect(t); }),
              "ControlNet checkpoint has 0 controlnet_down_blocks (zero convs), expected 2 for 1 levels of 1 resnets");
}
