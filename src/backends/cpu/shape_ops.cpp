#include "ops/shape_ops.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/ggml_quants.h"
#include "core/op_stats.h"
#include "core/quantized_weight.h"

#include <cmath>
#include <cstring>

namespace nuance {

Tensor CpuBackend::cat(const std::vector<Tensor>& ts, int64_t dim) {
    OpTimer op_timer("cat");
    NUANCE_CHECK(!ts.empty(), "cat: no tensors");
    const Tensor& t0 = ts[0];
    dim = normalize_dim(dim, t0.dim());
    DType dt = t0.dtype();
    int64_t total = 0;
    for (const auto& t : ts) {
        NUANCE_CHECK(t.dim() == t0.dim(), "cat: ranks differ: ", t0.shape(), " and ", t.shape());
        for (int64_t d = 0; d < t0.dim(); ++d)
            NUANCE_CHECK(d == dim || t.size(d) == t0.size(d), "cat: shapes ", t0.shape(), " and ", t.shape(),
                         " differ outside dim ", dim);
        if (t.dtype() != dt) dt = DType::F32;
        total += t.size(dim);
    }
    Shape s = t0.shape();
    s[dim] = total;
    // Channels-last inputs (a UNet's skip connections) give a channels-last result: rows of C copied per pixel.
    const bool cl = t0.is_channels_last() && !t0.is_contiguous();
    Tensor out = cl ? Tensor::empty_channels_last(s, dt) : Tensor::empty(s, dt);
    int64_t off = 0;
    for (const auto& t : ts) {
        Tensor dst = out.slice(dim, off, off + t.size(dim));
        dst.copy_(t);
        off += t.size(dim);
    }
    return out;
}

Tensor CpuBackend::pad2d(const Tensor& x_in, int64_t left, int64_t right, int64_t top, int64_t bottom, float value) {
    OpTimer op_timer("pad2d");
    NUANCE_CHECK(x_in.dim() == 4, "pad2d: input must be [N, C, H, W], got ", x_in.shape());
    NUANCE_CHECK(left >= 0 && right >= 0 && top >= 0 && bottom >= 0, "pad2d: negative padding");
    const Tensor x = x_in.f32();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Tensor y = Tensor::full({N, C, H + top + bottom, W + left + right}, value);
    y.slice(2, top, top + H).slice(3, left, left + W).copy_(x);
    return y;
}

Tensor CpuBackend::interpolate_nearest(const Tensor& x_in, int64_t oh, int64_t ow, DType out) {
    OpTimer op_timer("upsample");
    NUANCE_CHECK(out == DType::F32 || out == DType::BF16, "interpolate_nearest: output dtype ", dtype_name(out));
    NUANCE_CHECK(x_in.dim() == 4, "interpolate_nearest: input must be [N, C, H, W], got ", x_in.shape());
    NUANCE_CHECK(oh > 0 && ow > 0, "interpolate_nearest: bad output size ", oh, "x", ow);
    const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
    // torch upsample_nearest: src = min(floor(dst * (float)in/out), in - 1); exact halving for 2x.
    auto idx = [](int64_t o, int64_t in, int64_t out) -> int64_t {
        if (in == out) return o;
        if (out == 2 * in) return o >> 1;
        const float scale = (float)in / (float)out;
        return std::min((int64_t)std::floor((float)o * scale), in - 1);
    };
    std::vector<int64_t> iy(oh), ix(ow);
    for (int64_t i = 0; i < oh; ++i) iy[i] = idx(i, H, oh);
    for (int64_t j = 0; j < ow; ++j) ix[j] = idx(j, W, ow);
    if (x_in.is_channels_last() && !x_in.is_contiguous()) {  // stays channels-last: whole pixels of C copied
        // bf16 out (for a bf16 convolution): the input is rounded first, a quarter of the output's elements for 2x
        const Tensor xc = x_in.to(out);
        Tensor y = Tensor::empty_channels_last({N, C, oh, ow}, out);
        const size_t es = dtype_size(out);
        const uint8_t* px = static_cast<const uint8_t*>(xc.raw());
        uint8_t* py = static_cast<uint8_t*>(y.raw());
#pragma omp parallel for schedule(static) collapse(2)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j)
                    std::memcpy(py + (size_t)((n * oh + i) * ow + j) * C * es,
                                px + (size_t)((n * H + iy[i]) * W + ix[j]) * C * es, (size_t)C * es);
        return y;
    }
    const Tensor x = x_in.f32().contiguous();
    Tensor y = Tensor::empty({N, C, oh, ow}, DType::F32);
    const float* px = x.data<float>();
    float* py = y.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t nc = 0; nc < N * C; ++nc) {
        const float* s = px + nc * H * W;
        float* d = py + nc * oh * ow;
        for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) d[i * ow + j] = s[iy[i] * W + ix[j]];
    }
    return out == DType::BF16 ? y.to(DType::BF16) : y;
}

Tensor CpuBackend::embedding(const Tensor& ids_in, const Tensor& weight) {
    OpTimer op_timer("embedding");
    NUANCE_CHECK(weight.dim() == 2, "embedding: weight must be [V, D], got ", weight.shape());
    const std::vector<int64_t> ids = ids_in.to_ids();
    const int64_t V = weight.size(0), D = weight.size(1);
    Shape s = ids_in.shape();
    s.push_back(D);
    Tensor out = Tensor::empty(s, DType::F32);
    if (const auto q = quantized_weight_view(weight)) {  // a quantized / FP8 table: dequantize just the rows used
        float* dst = out.data<float>();
        for (size_t i = 0; i < ids.size(); ++i) {
            NUANCE_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: id ", ids[i], " out of range for a vocabulary of ", V);
            dequantize_row((GgmlType)q->ggml_type, q->data + ids[i] * q->row_bytes, dst + (int64_t)i * D, D);
            if (q->scale != 1.0f)
                for (int64_t k = 0; k < D; ++k) dst[(int64_t)i * D + k] *= q->scale;
        }
        return out;
    }
    Tensor rows = out.view({(int64_t)ids.size(), D});
    for (size_t i = 0; i < ids.size(); ++i) {
        NUANCE_CHECK(ids[i] >= 0 && ids[i] < V, "embedding: id ", ids[i], " out of range for a vocabulary of ", V);
        rows.select(0, (int64_t)i).copy_(weight.select(0, ids[i]));
    }
    return out;
}

Tensor CpuBackend::timestep_embedding(const Tensor& t_in, int64_t dim, bool flip_sin_to_cos, float shift, float scale,
                          int64_t max_period) {
    OpTimer op_timer("timestep_embedding");
    const Tensor t = t_in.f32().contiguous().reshape({-1});
    const int64_t B = t.numel(), half = dim / 2;
    Tensor out = Tensor::zeros({B, dim}, DType::F32);
    const float* pt = t.data<float>();
    float* po = out.data<float>();
    // diffusers: exponent = -ln(max_period) * arange(half) / (half - shift), computed in float32.
    std::vector<float> freq(half);
    for (int64_t i = 0; i < half; ++i) {
        const float exponent = -std::log((float)max_period) * (float)i / ((float)half - shift);
        freq[i] = std::exp(exponent);
    }
    for (int64_t b = 0; b < B; ++b) {
        for (int64_t i = 0; i < half; ++i) {
            const float a = scale * (pt[b] * freq[i]);
            const float s = std::sin(a), c = std::cos(a);
            po[b * dim + i] = flip_sin_to_cos ? c : s;
            po[b * dim + half + i] = flip_sin_to_cos ? s : c;
        }
    }
    return out;
}

}  // namespace nuance
