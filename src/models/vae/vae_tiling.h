// Tiled VAE decode / encode: large images go through the VAE in overlapping tiles, so peak memory depends on the
// tile size, not the image size. Each output pixel is a weighted mean of the tiles that cover it; the weight of a tile
// is the product of a vertical and a horizontal linear ramp across its overlaps, normalised so that the weights of
// every pixel sum to 1 (a partition of unity: no seams from weights, no brightness change in overlaps).
// Tiles differ from the untiled pass near their edges (zero padding in the convolutions) and in the GroupNorm and
// mid-block attention statistics, which see one tile instead of the whole image; the ramps hide the edges, the
// statistics make tiled output close to, not equal to, untiled output.
// Shape letters: N batch, C latent channels, h/w latent size, H/W image size (= h * f, w * f), f the VAE downscale.
#pragma once
#include <cstdint>
#include <vector>

#include "models/vae/autoencoder_kl.h"

namespace nuance {

struct VaeTiling {
    bool enabled = false;
    int64_t tile_px = 512;    // tile side in image pixels; a multiple of the VAE downscale
    int64_t overlap_px = 64;  // overlap of neighbouring tiles in image pixels; a multiple of the downscale, <= tile / 2
};

// Throws InvalidArgument naming the bad value (only the sizes are checked, not `enabled`).
void validate_vae_tiling(const VaeTiling& t, int64_t downscale);

// One tile along one axis: [start, end).
struct TileSpan {
    int64_t start = 0, end = 0;
    bool operator==(const TileSpan&) const = default;
};

// Tiles of `tile` with `overlap` covering [0, length): starts 0, tile - overlap, 2 (tile - overlap), ... and a last
// tile shifted back to end at `length` (no padding). One tile [0, length) when length <= tile.
std::vector<TileSpan> tile_spans(int64_t length, int64_t tile, int64_t overlap);

// Blend weights of `spans` (sorted, covering [0, length)): result[k][x - spans[k].start] for x in spans[k]. A tile
// ramps up linearly across its overlap with the previous tile and down across its overlap with the next (pixel
// centres: (x - start + 0.5) / overlap), is 1 elsewhere, and the weights at each x are normalised to sum to 1.
std::vector<std::vector<float>> tile_blend_weights(const std::vector<TileSpan>& spans, int64_t length);

// z: UNscaled latent [N, C, h, w] -> image [N, out_channels, H, W], as vae.decode(z). Untiled (exactly
// vae.decode(z)) when tiling is off or the image fits one tile.
Tensor vae_decode_tiled(const AutoencoderKL& vae, const Tensor& z, const VaeTiling& t);

// x: [N, in_channels, H, W] in [-1, 1], H and W multiples of f -> moments [N, 2C, h, w], as vae.encode_moments(x);
// moments (mean and logvar) are blended in latent space. Untiled when tiling is off or the image fits one tile.
Tensor vae_encode_moments_tiled(const AutoencoderKL& vae, const Tensor& x, const VaeTiling& t);
inline DiagonalGaussian vae_encode_tiled(const AutoencoderKL& vae, const Tensor& x, const VaeTiling& t) {
    return DiagonalGaussian::from_moments(vae_encode_moments_tiled(vae, x, t));
}

}  // namespace nuance
