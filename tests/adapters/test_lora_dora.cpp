// DoRA (PEFT lora_magnitude_vector and kohya/LyCORIS dora_scale) and LyCORIS Tucker/CP factors (lora_mid,
// hada_t1/t2, lokr_t2) merged into a tiny module, against tests/data/lora_dora/make_reference.py (peft's own
// merge_and_unload for the PEFT file; LyCORIS' einsum formulas and ComfyUI's weight_decompose for the others),
// and the errors for factors that do not fit.
#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

#include "adapters/lora.h"
#include "io/safetensors.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "../test_util.h"
#include "lora_test_util.h"

namespace nuance {
namespace {

namespace fs = std::filesystem;
using test::error_of;

const std::string kData = std::string(NUANCE_TEST_DATA) + "/lora_dora/";

const std::map<std::string, Tensor>& ref() {
    static const auto* r = new std::map<std::string, Tensor>(load_safetensors(kData + "reference.safetensors").tensors);
    return *r;
}

// The reference's tiny "UNet": blocks.0.proj (Linear 6 -> 8) and conv_in (Conv2d 6 -> 8, 3x3), base weights loaded.
struct TinyUnet : Module {
    Linear proj{6, 8};
    Conv2d conv{6, 8, 3, 1, 1};
    TinyUnet() {
        init_random(*this, 3);
        proj.weight.value = ref().at("base.blocks.0.proj").clone();
        conv.weight.value = ref().at("base.conv_in").clone();
    }
    void visit(ParamVisitor& v) override { v("blocks.0.proj", proj); v("conv_in", conv); }
    LoraComponents comps() { return {{"unet", this}}; }
};

void expect_merged(const std::string& file, float strength, const std::vector<std::string>& layers) {
    TinyUnet m;
    LoraMerge merge;
    const LoraApplyReport rep = merge.apply(m.comps(), load_lora(kData + file), strength);
    EXPECT_EQ(rep.matched, (int64_t)layers.size()) << file;
    const std::string stem = file.substr(0, file.find('.'));
    for (const auto& l : layers) {
        const Tensor& got = l == "conv_in" ? m.conv.weight.value : m.proj.weight.value;
        const Tensor& want = ref().at(stem + "." + l);
        ASSERT_EQ(got.shape(), want.shape()) << file << " " << l;
        EXPECT_LT(max_abs_diff(got, want), 2e-6f) << file << " " << l;
        EXPECT_GT(max_abs_diff(got, ref().at("base." + l)), 1e-3f) << file << " " << l;  // it did change
    }
    merge.restore();
    EXPECT_EQ(max_abs_diff(m.conv.weight.value, ref().at("base.conv_in")), 0.0f);
    EXPECT_EQ(max_abs_diff(m.proj.weight.value, ref().at("base.blocks.0.proj")), 0.0f);
}

TEST(LoraDora, PeftMagnitudeVectorMatchesPeftMerge) {
    const LoraFile f = load_lora(kData + "dora_peft.safetensors");
    ASSERT_EQ(f.modules.size(), 2u);
    for (const auto& m : f.modules) {
        EXPECT_TRUE(m.dora_scale.defined()) << m.name;
        EXPECT_TRUE(m.dora_peft) << m.name;
    }
    expect_merged("dora_peft.safetensors", 1.0f, {"blocks.0.proj", "conv_in"});
}

TEST(LoraDora, KohyaDoraScaleAtStrength07AsComfyUI) {
    const LoraFile f = load_lora(kData + "dora_kohya.safetensors");
    for (const auto& m : f.modules) EXPECT_FALSE(m.dora_peft) << m.name;
    expect_merged("dora_kohya.safetensors", 0.7f, {"blocks.0.proj", "conv_in"});
}

TEST(LoraDora, LoKrWithDoraScaleOnAConv) { expect_merged("lokr_dora.safetensors", 0.7f, {"conv_in"}); }

TEST(LoraTucker, LoConLoHaLoKrCoresMatchLyCORIS) {
    expect_merged("locon_tucker.safetensors", 0.7f, {"conv_in"});
    expect_merged("loha_tucker.safetensors", 0.7f, {"conv_in"});
    expect_merged("lokr_tucker.safetensors", 0.7f, {"conv_in"});
    // Ranks for the alpha / rank scale: the Tucker core's.
    EXPECT_EQ(load_lora(kData + "lokr_tucker.safetensors").modules[0].rank(), 2);
    EXPECT_NEAR(load_lora(kData + "locon_tucker.safetensors").modules[0].scale(), 0.5, 1e-12);
}

struct Dir : test::AdapterDir {
    Dir() : test::AdapterDir("nuance_dora_") {}
};

TEST(LoraDora, ErrorsForFactorsThatDoNotFit) {
    Dir d;
    auto z = [](const Shape& s) { return Tensor::zeros(s); };
    TinyUnet m;
    const Tensor w0 = m.proj.weight.value;
    // A DoRA magnitude of the wrong length: nothing is merged.
    std::string e = error_of([&] {
        LoraMerge merge;
        merge.apply(m.comps(), load_lora(d.file("a.safetensors", {{"lora_unet_blocks_0_proj.lora_down.weight", z({2, 6})},
                                                                 {"lora_unet_blocks_0_proj.lora_up.weight", z({8, 2})},
                                                                 {"lora_unet_blocks_0_proj.dora_scale", z({1, 5})}})),
                    1.0f);
    });
    EXPECT_NE(e.find("DoRA magnitude [1, 5] does not fit"), std::string::npos) << e;
    EXPECT_EQ(m.proj.weight.value.storage(), w0.storage());
    // Both spellings at once.
    e = error_of([&] {
        load_lora(d.file("b.safetensors", {{"x.lora_A.weight", z({2, 6})}, {"x.lora_B.weight", z({8, 2})},
                                            {"x.lora_magnitude_vector", z({8})}, {"x.dora_scale", z({1, 6})}}));
    });
    EXPECT_NE(e.find("both dora_scale and lora_magnitude_vector"), std::string::npos) << e;
    // A Tucker core that does not fit its factors, one that is too large, a LoHa core without its partner.
    e = error_of([&] {
        load_lora(d.file("c.safetensors", {{"lora_unet_conv_in.lora_down.weight", z({3, 6, 1, 1})},
                                            {"lora_unet_conv_in.lora_mid.weight", z({3, 2, 3, 3})},
                                            {"lora_unet_conv_in.lora_up.weight", z({8, 3, 1, 1})}}));
    });
    EXPECT_NE(e.find("lora_mid [3, 2, 3, 3] does not fit lora_down"), std::string::npos) << e;
    e = error_of([&] {
        load_lora(d.file("d.safetensors", {{"lora_unet_conv_in.lora_down.weight", z({3, 6, 1, 1})},
                                            {"lora_unet_conv_in.lora_mid.weight", z({3, 3, 9, 9})},
                                            {"lora_unet_conv_in.lora_up.weight", z({8, 3, 1, 1})}}));
    });
    EXPECT_NE(e.find("is too large"), std::string::npos) << e;
    e = error_of([&] {
        load_lora(d.file("e.safetensors", {{"lora_unet_conv_in.hada_t1", z({2, 2, 3, 3})},
                                            {"lora_unet_conv_in.hada_w1_a", z({2, 8})}, {"lora_unet_conv_in.hada_w1_b", z({2, 6})},
                                            {"lora_unet_conv_in.hada_w2_a", z({2, 8})}, {"lora_unet_conv_in.hada_w2_b", z({2, 6})}}));
    });
    EXPECT_NE(e.find("no 't2' tensor"), std::string::npos) << e;
    // A Tucker LoCon for a 5x5 kernel on the 3x3 conv: both shapes named.
    e = error_of([&] {
        LoraMerge merge;
        merge.apply(m.comps(), load_lora(d.file("f.safetensors", {{"lora_unet_conv_in.lora_down.weight", z({3, 6, 1, 1})},
                                                                 {"lora_unet_conv_in.lora_mid.weight", z({3, 3, 5, 5})},
                                                                 {"lora_unet_conv_in.lora_up.weight", z({8, 3, 1, 1})}})),
                    1.0f);
    });
    EXPECT_NE(e.find("makes a [8, 150] delta"), std::string::npos) << e;
    EXPECT_NE(e.find("[8, 6, 3, 3]"), std::string::npos) << e;
}

}  // namespace
}  // namespace nuance
