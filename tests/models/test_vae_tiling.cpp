// Tiled VAE decode/encode on the tiny diffusers VAE of the golden data (blocks 16/32/32/32, 8 norm groups, f = 8).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/rng.h"
#include "io/safetensors.h"
#include "models/vae/vae_tiling.h"
#include "ops/ops.h"
#include "../test_util.h"

using namespace nuance;
using ::testing::HasSubstr;
using nuance::test::error_of;

namespace {

const std::string kDir = std::string(NUANCE_TEST_DATA) + "/golden/vae";

const AutoencoderKL& tiny_vae() {
    static const AutoencoderKL* vae = [] {
        const WeightFile sd = load_safetensors(kDir + "/vae_sd.safetensors");
        auto* v = new AutoencoderKL(AutoencoderKLConfig::detect(sd.tensors, "", 8));
        load_module(*v, sd.tensors, {.source = sd.path});
        return v;
    }();
    return *vae;
}

VaeTiling tiling(int64_t tile, int64_t overlap) { return {true, tile, overlap}; }

double mean_abs_diff(const Tensor& a, const Tensor& b) {
    const std::vector<float> x = a.f32().contiguous().to_vector(), y = b.f32().contiguous().to_vector();
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += std::fabs((double)x[i] - y[i]);
    return s / (double)x.size();
}

// Mean |I[..., x + 1] - I[..., x]| over batch, channels and rows, for each column x of img [N, C, H, W].
std::vector<double> column_steps(const Tensor& img) {
    const Tensor c = img.f32().contiguous();
    const int64_t NC = c.size(0) * c.size(1), H = c.size(2), W = c.size(3);
    const float* p = c.data<float>();
    std::vector<double> d((size_t)W - 1, 0.0);
    for (int64_t i = 0; i < NC * H; ++i)
        for (int64_t x = 0; x + 1 < W; ++x) d[(size_t)x] += std::fabs(p[i * W + x + 1] - p[i * W + x]);
    for (double& v : d) v /= (double)(NC * H);
    return d;
}

}  // namespace

TEST(VaeTiling, SpansCoverWithLastTileShiftedBack) {
    EXPECT_EQ(tile_spans(8, 8, 2), (std::vector<TileSpan>{{0, 8}}));
    EXPECT_EQ(tile_spans(5, 8, 2), (std::vector<TileSpan>{{0, 5}}));  // smaller than a tile: one short tile
    EXPECT_EQ(tile_spans(20, 8, 2), (std::vector<TileSpan>{{0, 8}, {6, 14}, {12, 20}}));
    EXPECT_EQ(tile_spans(15, 8, 2), (std::vector<TileSpan>{{0, 8}, {6, 14}, {7, 15}}));  // last one shifted back
    EXPECT_EQ(tile_spans(9, 8, 0), (std::vector<TileSpan>{{0, 8}, {1, 9}}));
    EXPECT_EQ(tile_spans(16, 8, 0), (std::vector<TileSpan>{{0, 8}, {8, 16}}));
}

// (d) Hand-computed ramps, and the weights of every position summing to 1 for many plans (including the shifted
// last tile covering a position three times).
TEST(VaeTiling, BlendWeightsAreRampsThatSumToOne) {
    const auto w = tile_blend_weights({{0, 8}, {4, 12}}, 12);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0], (std::vector<float>{1, 1, 1, 1, 0.875f, 0.625f, 0.375f, 0.125f}));
    EXPECT_EQ(w[1], (std::vector<float>{0.125f, 0.375f, 0.625f, 0.875f, 1, 1, 1, 1}));
    EXPECT_EQ(tile_blend_weights({{0, 5}}, 5), (std::vector<std::vector<float>>{{1, 1, 1, 1, 1}}));
    EXPECT_EQ(tile_blend_weights({{0, 4}, {4, 8}}, 8)[1], (std::vector<float>{1, 1, 1, 1}));  // abutting: no ramp

    int triple = 0;
    for (int64_t len = 1; len <= 70; ++len)
        for (int64_t tile : {1, 2, 3, 8, 16, 64})
            for (int64_t ov = 0; ov * 2 <= tile; ++ov) {
                const auto spans = tile_spans(len, tile, ov);
                const auto ws = tile_blend_weights(spans, len);
                std::vector<double> sum((size_t)len, 0.0);
                std::vector<int> cover((size_t)len, 0);
                for (size_t k = 0; k < spans.size(); ++k) {
                    ASSERT_EQ((int64_t)ws[k].size(), spans[k].end - spans[k].start);
                    for (int64_t x = spans[k].start; x < spans[k].end; ++x) {
                        const float v = ws[k][(size_t)(x - spans[k].start)];
                        ASSERT_TRUE(v > 0 && v <= 1) << len << " " << tile << " " << ov << " x " << x << ": " << v;
                        sum[(size_t)x] += v;
                        ++cover[(size_t)x];
                    }
                }
                for (int64_t x = 0; x < len; ++x) {
                    ASSERT_NEAR(sum[(size_t)x], 1.0, 1e-6) << "len " << len << " tile " << tile << " overlap " << ov;
                    triple += cover[(size_t)x] >= 3;
                }
            }
    EXPECT_GT(triple, 0);  // the normalisation case was exercised

    // The 2-D weight of a pixel is the product of its row and column weights: sums to 1 as a product of sums.
    const auto rows = tile_spans(40, 16, 4), cols = tile_spans(50, 16, 8);
    const auto wy = tile_blend_weights(rows, 40), wx = tile_blend_weights(cols, 50);
    for (int64_t y = 0; y < 40; ++y)
        for (int64_t x = 0; x < 50; ++x) {
            double s = 0;
            for (size_t i = 0; i < rows.size(); ++i)
                for (size_t j = 0; j < cols.size(); ++j)
                    if (y >= rows[i].start && y < rows[i].end && x >= cols[j].start && x < cols[j].end)
                        s += (double)wy[i][(size_t)(y - rows[i].start)] * wx[j][(size_t)(x - cols[j].start)];
            ASSERT_NEAR(s, 1.0, 1e-6) << y << ", " << x;
        }
}

// (a) An image that fits one tile takes the untiled path: bit-identical. Tiling off is untiled at any size.
TEST(VaeTiling, OneTileOrDisabledIsExactlyUntiled) {
    const AutoencoderKL& vae = tiny_vae();
    auto rng = make_rng(RngKind::Cpu, 1);
    const Tensor z = rng->randn({2, 4, 8, 6});
    EXPECT_EQ(vae_decode_tiled(vae, z, tiling(64, 16)).to_vector(), vae.decode(z).to_vector());
    const Tensor x = rng->randn({1, 3, 64, 40});
    EXPECT_EQ(vae_encode_moments_tiled(vae, x, tiling(64, 16)).to_vector(), vae.encode_moments(x).to_vector());
    const Tensor big = rng->randn({1, 4, 12, 20});
    EXPECT_EQ(vae_decode_tiled(vae, big, VaeTiling{}).to_vector(), vae.decode(big).to_vector());
    const DiagonalGaussian a = vae_encode_tiled(vae, x, tiling(64, 16)), b = vae.encode(x);
    EXPECT_EQ(a.mean.to_vector(), b.mean.to_vector());
    EXPECT_EQ(a.logvar.to_vector(), b.logvar.to_vector());
}

// (b) Larger inputs: tiled output differs from untiled (each tile has its own GroupNorm and attention statistics and
// zero padding at its edges) by less than bounds measured on this VAE: decode, 192x320 px in 128 px tiles with 32 px
// overlap (2 x 3 tiles), mean |diff| 0.099 and max 1.09 (untiled output: range [-3.3, 4.1], mean |x| 0.43); encode
// of a 192x320 image, same tiles, moments mean |diff| 0.047, max 0.52. Bounds: 1.5x those. Where one tile alone
// covers a pixel, the output is that tile's own decode, bit for bit (placement and unit weights).
TEST(VaeTiling, TiledCloseToUntiled) {
    const AutoencoderKL& vae = tiny_vae();
    auto rng = make_rng(RngKind::Cpu, 2);
    const Tensor z = rng->randn({1, 4, 24, 40});
    const Tensor ref = vae.decode(z), tiled = vae_decode_tiled(vae, z, tiling(128, 32));
    ASSERT_EQ(tiled.shape(), ref.shape());
    const double mean = mean_abs_diff(tiled, ref), max = max_abs_diff(tiled, ref);
    EXPECT_GT(max, 0.0);
    EXPECT_LT(mean, 0.15);
    EXPECT_LT(max, 1.6);

    // Rows [0, 16) [8, 24), columns [0, 16) [12, 28) [24, 40) in latents: tile (0, 0) alone covers pixels
    // [0, 64) x [0, 96), the last tile alone [128, 192) x [224, 320).
    EXPECT_EQ(tile_spans(24, 16, 4), (std::vector<TileSpan>{{0, 16}, {8, 24}}));
    EXPECT_EQ(tile_spans(40, 16, 4), (std::vector<TileSpan>{{0, 16}, {12, 28}, {24, 40}}));
    const Tensor first = vae.decode(z.slice(2, 0, 16).slice(3, 0, 16).contiguous());
    EXPECT_EQ(tiled.slice(2, 0, 64).slice(3, 0, 96).contiguous().to_vector(),
              first.slice(2, 0, 64).slice(3, 0, 96).contiguous().to_vector());
    const Tensor last = vae.decode(z.slice(2, 8, 24).slice(3, 24, 40).contiguous());
    EXPECT_EQ(tiled.slice(2, 128, 192).slice(3, 224, 320).contiguous().to_vector(),
              last.slice(2, 64, 128).slice(3, 32, 128).contiguous().to_vector());

    const Tensor x = tanh(rng->randn({1, 3, 192, 320}));
    const Tensor mref = vae.encode_moments(x), m = vae_encode_moments_tiled(vae, x, tiling(128, 32));
    ASSERT_EQ(m.shape(), mref.shape());
    EXPECT_GT(max_abs_diff(m, mref), 0.0f);
    EXPECT_LT(mean_abs_diff(m, mref), 0.07);
    EXPECT_LT(max_abs_diff(m, mref), 0.8);
    EXPECT_EQ(vae_encode_tiled(vae, x, tiling(128, 32)).mean.shape(), (Shape{1, 4, 24, 40}));
}

// (c) A constant latent: every tile decodes to the same picture, so the only mismatch between neighbours is each
// tile's own edge (zero padding). Seam probe: the column step |I[x] - I[x - 1]| across each tile edge divided by the
// mean step of the two columns on either side (1 for a smooth image, > 1 where there is a jump). Measured on
// 128x384 px in 128 px tiles: worst edge 0.94 with 32 px overlap; with no overlap (the control, abutting tiles)
// 2.3 at the tile boundaries, i.e. the probe sees a seam there.
TEST(VaeTiling, ConstantLatentHasNoSeam) {
    const AutoencoderKL& vae = tiny_vae();
    const Tensor z = Tensor::full({1, 4, 16, 48}, 0.7f);
    auto worst_edge_ratio = [&](int64_t overlap) {
        const Tensor img = vae_decode_tiled(vae, z, tiling(128, overlap));
        const std::vector<double> d = column_steps(img);  // d[x - 1] = step between columns x - 1 and x
        double worst = 0;
        for (const TileSpan& s : tile_spans(48, 16, overlap / 8))
            for (int64_t edge : {s.start * 8, s.end * 8}) {
                if (edge <= 0 || edge >= 384) continue;
                const size_t i = (size_t)edge - 1;
                const double around = (d[i - 2] + d[i - 1] + d[i + 1] + d[i + 2]) / 4;
                worst = std::max(worst, d[i] / around);
            }
        return worst;
    };
    const double blended = worst_edge_ratio(32), abutting = worst_edge_ratio(0);
    EXPECT_LT(blended, 1.3);
    EXPECT_GT(abutting, 1.8);
}

// (e) Bad tile settings and inputs: errors that name the value.
TEST(VaeTiling, Errors) {
    EXPECT_NO_THROW(validate_vae_tiling(tiling(512, 64), 8));
    EXPECT_NO_THROW(validate_vae_tiling(tiling(64, 32), 8));
    EXPECT_NO_THROW(validate_vae_tiling(tiling(8, 0), 8));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(0, 0), 8); }),
                HasSubstr("tile size 0 px is not a positive multiple of the VAE downscale 8"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(-64, 0), 8); }), HasSubstr("tile size -64 px"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(100, 16), 8); }), HasSubstr("tile size 100 px"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(64, 12), 8); }),
                HasSubstr("tile overlap 12 px is not a non-negative multiple of the VAE downscale 8"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(64, -8), 8); }), HasSubstr("tile overlap -8 px"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(64, 40), 8); }),
                HasSubstr("tile overlap 40 px is more than half the tile size 64 px"));
    EXPECT_THAT(error_of([] { validate_vae_tiling(tiling(64, 64), 8); }), HasSubstr("more than half"));

    EXPECT_THAT(error_of([] { tile_spans(10, 4, 4); }), HasSubstr("tile_spans: bad length 10, tile 4, overlap 4"));
    EXPECT_THAT(error_of([] { tile_spans(0, 4, 1); }), HasSubstr("bad length 0"));
    EXPECT_THAT(error_of([] { tile_blend_weights({}, 4); }), HasSubstr("no tiles"));
    EXPECT_THAT(error_of([] { tile_blend_weights({{0, 4}, {5, 8}}, 8); }),
                HasSubstr("tile 1 [5, 8) does not follow the previous tile without a gap"));
    EXPECT_THAT(error_of([] { tile_blend_weights({{0, 4}, {2, 6}}, 8); }), HasSubstr("end at 6, not at 8"));
    EXPECT_THAT(error_of([] { tile_blend_weights({{0, 9}}, 8); }), HasSubstr("tile 0 [0, 9) is not inside [0, 8)"));
    EXPECT_THAT(error_of([] { tile_blend_weights({{1, 8}}, 8); }), HasSubstr("tile 0 [1, 8)"));

    const AutoencoderKL& vae = tiny_vae();
    // Settings are checked even when the image would fit one tile.
    EXPECT_THAT(error_of([&] { vae_decode_tiled(vae, Tensor::zeros({1, 4, 2, 2}), tiling(60, 8)); }),
                HasSubstr("tile size 60 px"));
    EXPECT_THAT(error_of([&] { vae_encode_moments_tiled(vae, Tensor::zeros({1, 3, 16, 16}), tiling(64, 40)); }),
                HasSubstr("more than half"));
    EXPECT_THAT(error_of([&] { vae_decode_tiled(vae, Tensor::zeros({4, 12, 12}), tiling(64, 16)); }),
                HasSubstr("vae_decode_tiled: expected a latent [N, C, h, w], got [4, 12, 12]"));
    EXPECT_THAT(error_of([&] { vae_decode_tiled(vae, Tensor(), tiling(64, 16)); }), HasSubstr("got []"));
    EXPECT_THAT(error_of([&] { vae_decode_tiled(vae, Tensor::zeros({1, 16, 12, 12}), tiling(64, 16)); }),
                HasSubstr("expected [N, 4, h, w]"));  // from the VAE, on the first tile
    EXPECT_THAT(error_of([&] { vae_encode_moments_tiled(vae, Tensor::zeros({1, 3, 72, 100}), tiling(64, 16)); }),
                HasSubstr("vae_encode_tiled: image size 100x72 is not a multiple of the VAE downscale 8"));
    EXPECT_THAT(error_of([&] { vae_encode_moments_tiled(vae, Tensor::zeros({3, 72, 96}), tiling(64, 16)); }),
                HasSubstr("expected an image [N, C, H, W], got [3, 72, 96]"));
    AutoencoderKL unloaded(vae.config());
    EXPECT_THAT(error_of([&] { vae_decode_tiled(unloaded, Tensor::zeros({1, 4, 12, 12}), tiling(64, 16)); }),
                HasSubstr("not loaded"));
}
