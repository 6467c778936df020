#include "models/dit/dit.h"

#include <cmath>

namespace nuance {

namespace {

// adaLN modulation: x * (1 + scale) + shift, per sample.  x: [N, T, D], shift/scale: [N, D]
Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
    return x * (scale.unsqueeze(1) + 1.0f) + shift.unsqueeze(1);
}

// 1-D sin-cos features of positions `pos` (MAE's get_1d_sincos_pos_embed_from_grid): [len(pos), dim], sin then cos.
void sincos_1d(int64_t dim, const std::vector<double>& pos, float* out, int64_t row_stride) {
    const int64_t half = dim / 2;
    for (size_t m = 0; m < pos.size(); ++m)
        for (int64_t d = 0; d < half; ++d) {
            const double omega = 1.0 / std::pow(10000.0, (double)d / (double)half);
            const double a = pos[m] * omega;
            out[(int64_t)m * row_stride + d] = (float)std::sin(a);
            out[(int64_t)m * row_stride + half + d] = (float)std::cos(a);
        }
}

}  // namespace

Tensor dit_pos_embed(int64_t dim, int64_t grid_h, int64_t grid_w) {
    NUANCE_CHECK(dim > 0 && dim % 4 == 0, "DiT position embedding: width ", dim, " must be a multiple of 4");
    NUANCE_CHECK(grid_h > 0 && grid_w > 0 && grid_h <= 4096 && grid_w <= 4096, "DiT position embedding: grid ",
                 grid_h, "x", grid_w, " out of range (1..4096)");
    const int64_t T = grid_h * grid_w, half = dim / 2;
    Tensor out = Tensor::empty({T, dim});
    float* po = out.data<float>();
    // np.meshgrid(grid_w, grid_h): token t = i * w + j; the first half encodes the column j, the second the row i.
    std::vector<double> col(T), row(T);
    for (int64_t i = 0; i < grid_h; ++i)
        for (int64_t j = 0; j < grid_w; ++j) {
            col[i * grid_w + j] = (double)j;
            row[i * grid_w + j] = (double)i;
        }
    sincos_1d(half, col, po, dim);
    sincos_1d(half, row, po + half, dim);
    return out;
}

DiTConditioning::DiTConditioning(const DiTConfig& c)
    : linear_1(c.freq_dim, c.hidden), linear_2(c.hidden, c.hidden), embedding_table({c.num_classes + 1, c.hidden}),
      freq_dim(c.freq_dim), freq_shift(c.freq_shift) {}

// c = MLP(sinusoid(t)) + E[y]   [N, D]
Tensor DiTConditioning::operator()(const Tensor& timestep, const Tensor& class_labels) const {
    const Tensor t_freq = timestep_embedding(timestep, freq_dim, /*flip_sin_to_cos=*/true, freq_shift);  // [N, 256]
    const Tensor t_emb = linear_2(silu(linear_1(t_freq)));                                             // [N, D]
    return t_emb + embedding(class_labels, *embedding_table);                                           // [N, D]
}

void DiTConditioning::visit(ParamVisitor& v) {
    v("timestep_embedder.linear_1", linear_1);
    v("timestep_embedder.linear_2", linear_2);
    v("class_embedder.embedding_table.weight", embedding_table);
}

DiTBlock::DiTBlock(const DiTConfig& c)
    : emb(c), ada_ln(c.hidden, 6 * c.hidden), attn(c.hidden, c.hidden, c.heads, c.head_dim(), /*qkv_bias=*/true),
      fc1(c.hidden, c.mlp_hidden), fc2(c.mlp_hidden, c.hidden), attn_norm_eps(c.attn_norm_eps),
      mlp_norm_eps(c.mlp_norm_eps) {}

// adaLN-Zero (Peebles & Xie 2022, section 3.2).  x: [N, T, D], c: [N, D]
Tensor DiTBlock::forward(Tensor x, const Tensor& c) const {
    auto [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] = chunk<6>(ada_ln(silu(c)), 1);  // [N, D]
    const Tensor h = modulate(layer_norm(x, Tensor(), Tensor(), attn_norm_eps), shift_msa, scale_msa);
    x = x + gate_msa.unsqueeze(1) * attn(h);
    const Tensor m = modulate(layer_norm(x, Tensor(), Tensor(), mlp_norm_eps), shift_mlp, scale_mlp);
    x = x + gate_mlp.unsqueeze(1) * fc2(gelu_tanh(fc1(m)));
    return x;
}

void DiTBlock::visit(ParamVisitor& v) {
    v("norm1.emb", emb);
    v("norm1.linear", ada_ln);
    v("attn1", attn);
    v("ff.net.0.proj", fc1);
    v("ff.net.2", fc2);
}

DiTTransformer2DModel::DiTTransformer2DModel(const DiTConfig& cfg)
    : patch_embed(cfg.in_channels, cfg.hidden, cfg.patch_size, cfg.patch_size, 0),
      proj_out_1(cfg.hidden, 2 * cfg.hidden),
      proj_out_2(cfg.hidden, cfg.patch_size * cfg.patch_size * cfg.out_channels), cfg_(cfg) {
    NUANCE_CHECK(cfg.heads > 0 && cfg.hidden % cfg.heads == 0, "DiT: ", cfg.heads,
                 " attention heads do not divide the width ", cfg.hidden);
    blocks.reserve((size_t)cfg.depth);
    for (int64_t i = 0; i < cfg.depth; ++i) blocks.emplace_back(cfg);
}

void DiTTransformer2DModel::visit(ParamVisitor& v) {
    v("pos_embed.proj", patch_embed);
    v("transformer_blocks", blocks);
    v("proj_out_1", proj_out_1);
    v("proj_out_2", proj_out_2);
}

Tensor DiTTransformer2DModel::forward(const Tensor& x, const Tensor& timestep_in, const Tensor& class_labels) const {
    const DiTConfig& c = cfg_;
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == c.in_channels, "DiT: latent must be [N, ", c.in_channels,
                 ", H, W], got ", x.shape());
    const int64_t N = x.size(0), H = x.size(2), W = x.size(3), p = c.patch_size;
    NUANCE_CHECK(N >= 1 && H >= p && W >= p && H % p == 0 && W % p == 0, "DiT: latent size ", H, "x", W,
                 " must be a positive multiple of the patch size ", p);
    NUANCE_CHECK(c.sample_size == 0 || (H == c.sample_size && W == c.sample_size), "DiT: latent size ", H, "x", W,
                 " differs from the model's ", c.sample_size, "x", c.sample_size,
                 " (its position embedding is fixed)");
    NUANCE_CHECK(class_labels.defined() && class_labels.numel() == N && !dtype_is_float(class_labels.dtype()),
                 "DiT: class_labels must be ", N, " integers, got ",
                 class_labels.defined() ? class_labels.str() : std::string("none"));
    for (int64_t y : class_labels.to_ids())
        NUANCE_CHECK(y >= 0 && y <= c.num_classes, "DiT: class label ", y, " is out of range [0, ", c.num_classes,
                     "] (", c.num_classes, " = the null class of classifier-free guidance)");
    NUANCE_CHECK(timestep_in.defined() && (timestep_in.numel() == N || timestep_in.numel() == 1),
                 "DiT: timestep must hold 1 or ", N, " values, got ",
                 timestep_in.defined() ? timestep_in.str() : std::string("none"));
    for (float tv : timestep_in.to_vector())
        NUANCE_CHECK(std::isfinite(tv), "DiT: timestep ", tv, " is not finite");
    const Tensor timestep =
        timestep_in.numel() == N ? timestep_in.reshape({N}) : timestep_in.f32().reshape({1}).expand({N}).contiguous();
    const Tensor labels = class_labels.reshape({N});
    const int64_t h = H / p, w = W / p, D = c.hidden;

    // Patchify: [N, C, H, W] -> [N, D, h, w] -> [N, T, D], plus the fixed sin-cos position embedding.
    Tensor tokens = patch_embed(x).flatten(2).transpose(1, 2);
    tokens = tokens + dit_pos_embed(D, h, w).unsqueeze(0);  // [N, T, D]

    for (const DiTBlock& block : blocks) tokens = block.forward(tokens, block.emb(timestep, labels));

    // Final layer: adaLN (shift, scale) from block 0's conditioning, then the linear decoder to p*p*Co per token.
    const Tensor cond = blocks.front().emb(timestep, labels);                 // [N, D]
    auto [shift, scale] = chunk<2>(proj_out_1(silu(cond)), 1);               // [N, D]
    tokens = modulate(layer_norm(tokens, Tensor(), Tensor(), c.final_norm_eps), shift, scale);
    const Tensor patches = proj_out_2(tokens);                                // [N, T, p*p*Co]

    // Unpatchify: [N, h, w, p, q, Co] -> [N, Co, h, p, w, q] -> [N, Co, H, W]
    return patches.reshape({N, h, w, p, p, c.out_channels})
        .permute({0, 5, 1, 3, 2, 4})
        .contiguous()
        .reshape({N, c.out_channels, H, W});
}

}  // namespace nuance
