// 3x3 convolutions (stride 1, padding 1, with bias) at Stable Diffusion 1.5 shapes: the UNet at 512x512 with CFG
// (batch 2, latent 64x64) and the VAE decoder (batch 1) at its two most expensive levels.
// Shape letters: N batch, C in channels, O out channels, H/W spatial.
// Each case runs with an F32 weight and with a BF16 weight (x stays F32, the result is F32); x is channels-last, as
// the models run (F32: Winograd F(4x4, 3x3), NUANCE_CONV_WINOGRAD=0 for oneDNN's direct kernel).
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
    {"vae_dec_512_64x64_n1", 1, 512, 512, 64, 64},    // decoder mid block and up_blocks.0
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

const int kRegistered = [] {
    for (const ConvCase& c : kConvCases)
        for (DType t : {DType::F32, DType::BF16})
            add(std::string("conv3x3/") + c.name + "/" + dtype_tag(t),
                [c, t](benchmark::State& s) { bm_conv3x3(s, c, t); });
    return 0;
}();

}  // namespace
}  // namespace nuance::bench
