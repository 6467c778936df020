// The C API against misuse and broken models: freed / double-freed handles, unbounded thread counts, NaN weights
// (an error, not a black image with NUANCE_OK), atomic PNG writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sys/resource.h>

#include "../cli/tiny_model_suite.h"
#include "../test_util.h"
#include "io/safetensors.h"
#include "nuance.h"

using namespace nuance;
namespace fs = std::filesystem;
using ::testing::HasSubstr;

namespace {

class CapiHardening : public nuance::test::TinyModelSuite<CapiHardening> {};

nuance_model* load(const std::string& path) {
    nuance_model_params mp;
    nuance_model_params_init(&mp);
    mp.precision = "fp32";
    nuance_model* m = nullptr;
    EXPECT_EQ(nuance_model_load(path.c_str(), &mp, &m), NUANCE_OK) << nuance_last_error();
    return m;
}

}  // namespace

TEST_F(CapiHardening, FreedAndDoubleFreedHandlesAreRefused) {
    nuance_model* m = load(model());
    ASSERT_NE(m, nullptr);
    nuance_context* ctx = nullptr;
    ASSERT_EQ(nuance_context_create(m, nullptr, &ctx), NUANCE_OK) << nuance_last_error();
    nuance_context_free(ctx);
    // use after free: an error, not a crash
    nuance_generate_params gp;
    nuance_generate_params_init(&gp);
    gp.prompt = "apple";
    nuance_image* images = nullptr;
    int n = 0;
    EXPECT_EQ(nuance_generate(ctx, &gp, &images, &n), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_generate: ctx is not a live context handle"));
    nuance_context_cancel(ctx);
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_context_cancel: not a live context handle"));
    nuance_context_free(ctx);  // double free: reported, not performed
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_context_free: not a live context handle"));
    nuance_model_free(m);
    EXPECT_STREQ(nuance_model_family(m), "");
    EXPECT_EQ(nuance_model_default_size(m), 0);
    nuance_context* ctx2 = nullptr;
    EXPECT_EQ(nuance_context_create(m, nullptr, &ctx2), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(nuance_last_error(), HasSubstr("model is not a live model handle"));
    nuance_model_free(m);
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_model_free: not a live model handle"));
    // a pointer never returned by the API
    int junk = 0;
    nuance_model_free(reinterpret_cast<nuance_model*>(&junk));
    EXPECT_THAT(nuance_last_error(), HasSubstr("not a live model handle"));
}

TEST_F(CapiHardening, ThreadCountsAreBounded) {
    nuance_model* m = load(model());
    ASSERT_NE(m, nullptr);
    nuance_context_params cp;
    nuance_context_params_init(&cp);
    cp.n_threads = 100000;
    nuance_context* ctx = nullptr;
    EXPECT_EQ(nuance_context_create(m, &cp, &ctx), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_context_create: n_threads must be in 1.."));
    EXPECT_THAT(nuance_last_error(), HasSubstr("got 100000"));
    EXPECT_EQ(ctx, nullptr);
    cp.n_threads = -1;
    EXPECT_EQ(nuance_context_create(m, &cp, &ctx), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_GE(nuance_max_threads(), 256);
    nuance_set_num_threads(nuance_max_threads() + 1);
    EXPECT_THAT(nuance_last_error(), HasSubstr("nuance_set_num_threads: n must be at most"));
    nuance_model_free(m);
}

TEST_F(CapiHardening, NanWeightsAreAnErrorNotABlackImage) {
    WeightFile wf = load_safetensors(model());
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& [k, v] : wf.tensors) {
        if (k == "model.diffusion_model.out.2.bias")
            t.emplace_back(k, Tensor::from_vector(std::vector<float>((size_t)v.numel(), NAN), v.shape()).to(v.dtype()));
        else
            t.emplace_back(k, v);
    }
    save_safetensors(path("nan.safetensors"), t);
    nuance_model* m = load(path("nan.safetensors"));
    ASSERT_NE(m, nullptr);
    nuance_context* ctx = nullptr;
    ASSERT_EQ(nuance_context_create(m, nullptr, &ctx), NUANCE_OK);
    nuance_generate_params gp;
    nuance_generate_params_init(&gp);
    gp.prompt = "apple";
    gp.width = gp.height = 64;
    gp.steps = 2;
    nuance_image* images = nullptr;
    int n = 0;
    EXPECT_EQ(nuance_generate(ctx, &gp, &images, &n), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(nuance_last_error(), HasSubstr("the UNet output at step 1 of 2"));
    EXPECT_THAT(nuance_last_error(), HasSubstr("is NaN"));
    EXPECT_EQ(images, nullptr);
    EXPECT_EQ(n, 0);
    gp.eta = NAN;
    EXPECT_EQ(nuance_generate(ctx, &gp, &images, &n), NUANCE_ERR_INVALID_ARGUMENT);
    EXPECT_THAT(nuance_last_error(), HasSubstr("eta must be a finite number"));
    nuance_context_free(ctx);
    nuance_model_free(m);
}

TEST_F(CapiHardening, WritePngIsAtomic) {
    std::vector<uint8_t> px(64 * 64 * 3);
    for (size_t i = 0; i < px.size(); ++i) px[i] = (uint8_t)(i * 7919 % 251);
    nuance_image img{};
    img.width = img.height = 64;
    img.channels = 3;
    img.data = px.data();
    const std::string out = path("capi_old.png");
    std::ofstream(out, std::ios::binary) << "old";
    nuance_status st;
    {
        const nuance::test::FileSizeLimit full_disk(128);
        st = nuance_image_write_png(&img, out.c_str());
    }
    EXPECT_EQ(st, NUANCE_ERR_IO);
    EXPECT_THAT(nuance_last_error(), HasSubstr("File too large"));
    std::ifstream f(out, std::ios::binary);
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(f)), {}), "old");
}
