// Shape letters: N batch, C channels of the tile outputs, h/w latent size, H/W image size, f the VAE downscale.
// A "grid unit" is one latent pixel: tiles are planned on the latent grid so that image tiles start on multiples
// of f, then weighted at the resolution of the output (pixels for decode, latent pixels for encode).
#include "models/vae/vae_tiling.h"

#include <algorithm>
#include <functional>

namespace nuance {

void validate_vae_tiling(const VaeTiling& t, int64_t f) {
    NUANCE_CHECK(f >= 1, "VAE tiling: bad VAE downscale ", f);
    NUANCE_CHECK(t.tile_px > 0 && t.tile_px <= (int64_t)1 << 20 && t.tile_px % f == 0, "VAE tiling: tile size ",
                 t.tile_px, " px is not a positive multiple of the VAE downscale ", f);
    NUANCE_CHECK(t.overlap_px >= 0 && t.overlap_px % f == 0, "VAE tiling: tile overlap ", t.overlap_px,
                 " px is not a non-negative multiple of the VAE downscale ", f);
    // Beyond half a tile a pixel would be covered by three tiles along an axis: more work, no better blend.
    NUANCE_CHECK(t.overlap_px * 2 <= t.tile_px, "VAE tiling: tile overlap ", t.overlap_px,
                 " px is more than half the tile size ", t.tile_px, " px");
}

std::vector<TileSpan> tile_spans(int64_t length, int64_t tile, int64_t overlap) {
    NUANCE_CHECK(length > 0 && tile > 0 && overlap >= 0 && overlap < tile, "tile_spans: bad length ", length,
                 ", tile ", tile, ", overlap ", overlap);
    if (length <= tile) return {{0, length}};
    std::vector<TileSpan> spans;
    const int64_t stride = tile - overlap;
    for (int64_t s = 0; s + tile < length; s += stride) spans.push_back({s, s + tile});
    spans.push_back({length - tile, length});  // shifted back to end at the border: overlaps its neighbour more
    return spans;
}

std::vector<std::vector<float>> tile_blend_weights(const std::vector<TileSpan>& spans, int64_t length) {
    NUANCE_CHECK(!spans.empty() && length > 0, "tile_blend_weights: no tiles or empty length ", length);
    for (size_t k = 0; k < spans.size(); ++k) {
        const TileSpan& s = spans[k];
        NUANCE_CHECK(s.start >= 0 && s.start < s.end && s.end <= length, "tile_blend_weights: tile ", k, " [",
                     s.start, ", ", s.end, ") is not inside [0, ", length, ")");
        NUANCE_CHECK(k == 0 ? s.start == 0 : (s.start > spans[k - 1].start && s.start <= spans[k - 1].end),
                     "tile_blend_weights: tile ", k, " [", s.start, ", ", s.end,
                     ") does not follow the previous tile without a gap");
    }
    NUANCE_CHECK(spans.back().end == length, "tile_blend_weights: the tiles end at ", spans.back().end,
                 ", not at ", length);

    std::vector<std::vector<double>> raw(spans.size());
    std::vector<double> sum((size_t)length, 0.0);
    for (size_t k = 0; k < spans.size(); ++k) {
        const TileSpan& s = spans[k];
        // Ramp up across [start, previous end), down across [next start, end); 1 where there is no neighbour.
        const int64_t up = k > 0 ? spans[k - 1].end - s.start : 0;
        const int64_t down = k + 1 < spans.size() ? s.end - spans[k + 1].start : 0;
        raw[k].resize((size_t)(s.end - s.start));
        for (int64_t x = s.start; x < s.end; ++x) {
            double w = 1.0;
            if (up > 0) w = std::min(w, ((double)(x - s.start) + 0.5) / (double)up);
            if (down > 0) w = std::min(w, ((double)(s.end - x) - 0.5) / (double)down);
            raw[k][(size_t)(x - s.start)] = w;
            sum[(size_t)x] += w;
        }
    }
    std::vector<std::vector<float>> out(spans.size());
    for (size_t k = 0; k < spans.size(); ++k) {
        out[k].resize(raw[k].size());
        for (size_t i = 0; i < raw[k].size(); ++i)
            out[k][i] = (float)(raw[k][i] / sum[(size_t)spans[k].start + i]);  // sum >= the tile's own w > 0
    }
    return out;
}

namespace {

// Runs `fn` on every tile of `in` ([N, *, gh * in_scale, gw * in_scale]) and blends the outputs
// ([N, C, rows * out_scale, cols * out_scale] per tile) into [N, C, gh * out_scale, gw * out_scale], f32, then the
// dtype of fn's output.
Tensor blend_tiles(const Tensor& in, int64_t gh, int64_t gw, int64_t tile, int64_t overlap, int64_t in_scale,
                   int64_t out_scale, const std::function<Tensor(const Tensor&)>& fn) {
    const std::vector<TileSpan> rows = tile_spans(gh, tile, overlap), cols = tile_spans(gw, tile, overlap);
    auto scaled = [&](std::vector<TileSpan> v) {
        for (TileSpan& s : v) s = {s.start * out_scale, s.end * out_scale};
        return v;
    };
    const std::vector<TileSpan> out_rows = scaled(rows), out_cols = scaled(cols);
    const int64_t N = in.size(0), H = gh * out_scale, W = gw * out_scale;
    const auto wy = tile_blend_weights(out_rows, H), wx = tile_blend_weights(out_cols, W);

    Tensor out;
    DType out_dtype = DType::F32;
    int64_t C = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
        for (size_t j = 0; j < cols.size(); ++j) {
            const Tensor piece = in.slice(2, rows[i].start * in_scale, rows[i].end * in_scale)
                                     .slice(3, cols[j].start * in_scale, cols[j].end * in_scale)
                                     .contiguous();
            const Tensor o = fn(piece);
            const int64_t th = out_rows[i].end - out_rows[i].start, tw = out_cols[j].end - out_cols[j].start;
            if (!out.defined()) {
                NUANCE_CHECK_CODE(o.defined() && o.dim() == 4, Internal, "VAE tiling: a tile gave no [N, C, H, W]");
                C = o.size(1);
                out_dtype = o.dtype();
                out = Tensor::zeros({N, C, H, W});
            }
            NUANCE_CHECK_CODE(o.shape() == (Shape{N, C, th, tw}), Internal, "VAE tiling: tile (", i, ", ", j,
                              ") gave ", o.shape(), ", expected ", Shape{N, C, th, tw});
            const Tensor o32 = o.f32().contiguous();
            const float* src = o32.data<float>();
            float* dst = out.data<float>();
            const float* ry = wy[i].data();
            const float* rx = wx[j].data();
            const int64_t y0 = out_rows[i].start, x0 = out_cols[j].start;
            for (int64_t nc = 0; nc < N * C; ++nc)
                for (int64_t y = 0; y < th; ++y) {
                    const float* s = src + (nc * th + y) * tw;
                    float* d = dst + (nc * H + y0 + y) * W + x0;
                    for (int64_t x = 0; x < tw; ++x) d[x] += ry[y] * rx[x] * s[x];
                }
        }
    }
    return out.to(out_dtype);
}

}  // namespace

Tensor vae_decode_tiled(const AutoencoderKL& vae, const Tensor& z, const VaeTiling& t) {
    if (!t.enabled) return vae.decode(z);
    const int64_t f = vae.config().downscale();
    validate_vae_tiling(t, f);
    NUANCE_CHECK(z.defined() && z.dim() == 4 && z.size(0) > 0 && z.size(2) > 0 && z.size(3) > 0,
                 "vae_decode_tiled: expected a latent [N, C, h, w], got ", z.defined() ? z.shape() : Shape{});
    const int64_t tile = t.tile_px / f, h = z.size(2), w = z.size(3);
    if (h <= tile && w <= tile) return vae.decode(z);
    return blend_tiles(z, h, w, tile, t.overlap_px / f, 1, f, [&](const Tensor& zt) { return vae.decode(zt); });
}

Tensor vae_encode_moments_tiled(const AutoencoderKL& vae, const Tensor& x, const VaeTiling& t) {
    if (!t.enabled) return vae.encode_moments(x);
    const int64_t f = vae.config().downscale();
    validate_vae_tiling(t, f);
    NUANCE_CHECK(x.defined() && x.dim() == 4 && x.size(0) > 0 && x.size(2) > 0 && x.size(3) > 0,
                 "vae_encode_tiled: expected an image [N, C, H, W], got ", x.defined() ? x.shape() : Shape{});
    const int64_t H = x.size(2), W = x.size(3);
    if (H <= t.tile_px && W <= t.tile_px) return vae.encode_moments(x);
    NUANCE_CHECK(H % f == 0 && W % f == 0, "vae_encode_tiled: image size ", W, "x", H,
                 " is not a multiple of the VAE downscale ", f);
    return blend_tiles(x, H / f, W / f, t.tile_px / f, t.overlap_px / f, f, 1,
                       [&](const Tensor& xt) { return vae.encode_moments(xt); });
}

}  // namespace nuance
