// 3x3 convolutions (stride 1, padding 1, with bias) at Stable Diffusion 1.5 shapes: the UNet at 512x512 with CFG
// (batch 2, latent 64x64) and the VAE decoder (batch 1) at its two most expensive levels.
// Shape letters: N batch, C in channels, O out channels, H/W spatial.
// Each case runs with an F32 weight and with a BF16 weight (x stays F32, the result is F32); x is channels-last, as
// the models run (F32: Winograd F(4x4, 3x3); BF16: Winograd F(2x2, 3x3) with bf16 products or the f32 F(4x4) where
// they beat oneDNN's bf16 kernel, see backends/cpu/winograd.h; NUANCE_CONV_WINOGRAD=f32 for F(4x4) only, =0 for
// oneDNN's direct kernels).
#include <string>

#include "bench_util.h"
#include "ops/conv.h"

namespace nuance::bench {
namespace {

struct ConvCase {
    const char* name;
    int64_t N, C, O, H, W;
};

constexpr ConvCase kConvCases[] = {
    {"unet_conv_in_4to320_64x64_n2", 2, 4, 320, 64, 64},
    {"unet_320_64x64_n2", 2, 320, 320, 64, 64},       // resnets of down_blocks.0 / up_blocks.3
    {"unet_640_32x32_n2", 2, 640, 640, 32, 32},       // down_blocks.1 / up_blocks.2
    {"unet_1280_16x16_n2", 2, 1280, 1280, 16, 16},    // down_blocks.2 / up_blocks.1
    {"unet_1280_8x8_n2", 2, 1280, 1280, 8, 8},        // down_blocks.3, mid block / up_blocks.0 (at 256²: 16², 4²)
    {"unet_640_16x16_n2", 2, 640, 640, 16, 16},       // at 256²: down_blocks.1 / up_blocks.2
    {"unet_1280_4x4_n2", 2, 1280, 1280, 4, 4},        // at 256²: down_blocks.3, mid block / up_blocks.0
    {"vae_dec_512_64x64_n1", 1, 512, 512, 64, 64},    // decoder mid block and up_blocks.0
    {"vae_dec_512_128x128_n1", 1, 512, 512, 128, 128},  // decoder up_blocks.1
    {"vae_dec_256_256x256_n1", 1, 256, 256, 256, 256},  // decoder up_blocks.2
    {"vae_dec_128_512x512_n1", 1, 128, 128, 512, 512},  // decoder up_blocks.3, full resolution
};

void bm_conv3x3(benchmark::State& state, ConvCase c, DType wtype) {
    const Tensor x = randn({c.N, c.C, c.H, c.W}, 1).channels_last();
    const Tensor w = randn({c.O, c.C, 3, 3}, 2).to(wtype);
    const Tensor b = randn({c.O}, 3);
    const Conv2dParams p = Conv2dParams::same(1);
    for (auto _ : state) {
        Tensor y = conv2d(x, w, b, p);
        benchmark::DoNotOptimize(y);
    }
    report_flops(state, 2.0 * (double)c.N * (double)c.O * (double)c.H * (double)c.W * (double)c.C * 9.0);
}

// pytorch-fid's FID Inception v3 at 299x299, batch 16 (nuance eval fid's default batch): its costliest convolutions
// (1x1, the factorised 1x7 / 7x1 pairs, the few-channel stem, 5x5), F32 only (the FID path runs fp32).
struct InceptionCase {
    const char* name;
    int64_t N, C, O, H, W, kh, kw, stride, ph, pw;
};

constexpr InceptionCase kInceptionCases[] = {
    {"stem_2a_32to32_149_k3", 16, 32, 32, 149, 149, 3, 3, 1, 0, 0},
    {"stem_2b_32to64_147_k3p1", 16, 32, 64, 147, 147, 3, 3, 1, 1, 1},
    {"stem_3b_64to80_73_k1", 16, 64, 80, 73, 73, 1, 1, 1, 0, 0},
    {"stem_4a_80to192_73_k3", 16, 80, 192, 73, 73, 3, 3, 1, 0, 0},
    {"mixed5_48to64_35_k5p2", 16, 48, 64, 35, 35, 5, 5, 1, 2, 2},
    {"mixed5_288to64_35_k1", 16, 288, 64, 35, 35, 1, 1, 1, 0, 0},
    {"mixed6_768to192_17_k1", 16, 768, 192, 17, 17, 1, 1, 1, 0, 0},
    {"mixed6_192to192_17_k1x7", 16, 192, 192, 17, 17, 1, 7, 1, 0, 3},
    {"mixed6_192to192_17_k7x1", 16, 192, 192, 17, 17, 7, 1, 1, 3, 0},
    {"mixed6a_288to384_35_k3s2", 16, 288, 384, 35, 35, 3, 3, 2, 0, 0},
    {"mixed7_2048to448_8_k1", 16, 2048, 448, 8, 8, 1, 1, 1, 0, 0},
    {"mixed7_384to384_8_k1x3", 16, 384, 384, 8, 8, 1, 3, 1, 0, 1},
};

void bm_conv_inception(benchmark::State& state, InceptionCase c) {
    const Tensor x = randn({c.N, c.C, c.H, c.W}, 1).channels_last();
    const Tensor w = randn({c.O, c.C, c.kh, c.kw}, 2);
    const Tensor b = randn({c.O}, 3);
    Conv2dParams p;
    p.stride = c.stride;
    p.padding = {c.ph, c.pw, c.ph, c.pw};
    const int64_t Ho = (c.H + 2 * c.ph - c.kh) / c.stride + 1, Wo = (c.W + 2 * c.pw - c.kw) / c.stride + 1;
    for (auto _ : state) {
        Tensor y = conv2d(x, w, b, p);
        benchmark::DoNotOptimize(y);
    }
    report_flops(state, 2.0 * (double)c.N * (double)c.O * (double)Ho * (double)Wo * (double)c.C * (double)(c.kh * c.kw));
}

const int kRegistered = [] {
    for (const InceptionCase& c : kInceptionCases)
        add(std::string("conv_inception/") + c.name + "/f32", [c](benchmark::State& s) { bm_conv_inception(s, c); });
    for (const ConvCase& c : kConvCases)
        for (DType t : {DType::F32, DType::BF16})
            add(std::string("conv3x3/") + c.name + "/" + dtype_tag(t),
                [c, t](benchmark::State& s) { bm_conv3x3(s, c, t); });
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
