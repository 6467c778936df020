// `nuance generate --vae-tiling`: end to end on a tiny random SD1.5 (VAE downscale 8).
#include <gtest/gtest.h>

#include "../test_util.h"
#include "tiny_model_suite.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <unistd.h>

#include "io/image.h"

using namespace nuance;
namespace fs = std::filesystem;

namespace {

using nuance::test::CliRun;
using nuance::test::run_cli;

// Mean |tiled - untiled| of the 96x64 PNG (0..255) with 64 px tiles, 16 px overlap: measured 5.8 on this random
// VAE (one norm group per channel, so per-tile statistics move the colours); bound 1.5x that.
constexpr double kCliTiledBound = 9;

double mean_abs_pixel_diff(const Image& a, const Image& b) {
    double s = 0;
    for (size_t i = 0; i < a.pixels.size(); ++i) s += std::abs((int)a.pixels[i] - (int)b.pixels[i]);
    return s / (double)a.pixels.size();
}

class CliVaeTiling : public nuance::test::TinyModelSuite<CliVaeTiling> {
protected:
    static std::string gen() { return " generate -q --steps 2 --seed 5 -p apple -m " + model() + " "; }
};

}  // namespace

TEST_F(CliVaeTiling, TiledDecodeAndEncode) {
    ASSERT_EQ(run_cli(gen() + "-W 96 -H 64 -o " + path("plain.png")).code, 0);
    // The default 512 px tile covers 96x64: the untiled decode, pixel for pixel.
    CliRun r = run_cli(gen() + "-W 96 -H 64 --vae-tiling -o " + path("one_tile.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image plain = read_image(path("plain.png"));
    EXPECT_EQ(read_image(path("one_tile.png")).pixels, plain.pixels);

    // 64 px tiles, 16 px overlap: 1 x 2 tiles. Close to the untiled image, not equal (per-tile GroupNorm/attention).
    r = run_cli(gen() + "-W 96 -H 64 --vae-tiling --vae-tile-size 64 --vae-tile-overlap 16 -o " + path("tiled.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    const Image tiled = read_image(path("tiled.png"));
    ASSERT_EQ(tiled.width, 96);
    ASSERT_EQ(tiled.height, 64);
    const double d = mean_abs_pixel_diff(tiled, plain);
    EXPECT_GT(d, 0.0);
    EXPECT_LT(d, kCliTiledBound) << "mean |tiled - untiled| in 0..255 pixel values";

    // img2img with tiles: the init image is encoded in tiles too.
    r = run_cli(gen() + "-W 96 -H 64 --strength 0.5 -i " + path("plain.png") +
            " --vae-tiling --vae-tile-size 64 --vae-tile-overlap 16 -o " + path("i2i.png"));
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(read_image(path("i2i.png")).width, 96);
}

TEST_F(CliVaeTiling, UsageErrors) {
    CliRun r = run_cli(gen() + "-W 64 -H 64 --vae-tiling --vae-tile-size 30 -o " + path("x.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("tile size 30 px is not a positive multiple of the VAE downscale 8"), std::string::npos)
        << r.out;
    r = run_cli(gen() + "-W 64 -H 64 --vae-tiling --vae-tile-size 32 --vae-tile-overlap 24 -o " + path("x.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("tile overlap 24 px is more than half the tile size 32 px"), std::string::npos) << r.out;
    r = run_cli(gen() + "-W 64 -H 64 --vae-tiling --vae-tile-overlap -8 -o " + path("x.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find("tile overlap -8 px"), std::string::npos) << r.out;
    r = run_cli(gen() + "-W 64 -H 64 --vae-tile-size abc -o " + path("x.png"));
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_FALSE(fs::exists(path("x.png")));
}
