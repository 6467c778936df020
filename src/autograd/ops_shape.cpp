// Ops that move data, on Var: views (reshape, permute, slice, ...), cat/chunk, nearest upsampling, padding and
// embedding lookup. Shape letters: N batch, C channels, H/W input size, oh/ow output size, V vocabulary, D width.
// A view's backward puts the gradient back where the view's elements came from.
#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "ops/shape_ops.h"

namespace nuance {

namespace {

std::vector<Tensor> one(Tensor t) { return std::vector<Tensor>{std::move(t)}; }

// Backward of any reshape-like view: the gradient takes the input's shape again.
Var reshaped(const char* op, const Var& a, Tensor y) {
    const Shape s = a.shape();
    return record(op, std::move(y), {a}, [s](const Tensor& g, const std::vector<bool>&) { return one(g.reshape(s)); });
}

}  // namespace

Var Var::reshape(const Shape& shape) const { return reshaped("reshape", *this, value().reshape(shape)); }
Var Var::unsqueeze(int64_t d) const { return reshaped("unsqueeze", *this, value().unsqueeze(d)); }
Var Var::squeeze(int64_t d) const { return reshaped("squeeze", *this, value().squeeze(d)); }
Var Var::flatten(int64_t start, int64_t end) const { return reshaped("flatten", *this, value().flatten(start, end)); }

Var Var::permute(const std::vector<int64_t>& dims) const {
    Tensor y = value().permute(dims);  // checks dims
    std::vector<int64_t> inv(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inv[(size_t)normalize_dim(dims[i], dim())] = (int64_t)i;
    return record("permute", std::move(y), {*this},
                  [inv](const Tensor& g, const std::vector<bool>&) { return one(g.permute(inv)); });
}

Var Var::transpose(int64_t a, int64_t b) const {
    return record("transpose", value().transpose(a, b), {*this},
                  [a, b](const Tensor& g, const std::vector<bool>&) { return one(g.transpose(a, b)); });
}

Var Var::slice(int64_t d, int64_t start, int64_t end) const {
    const Shape s = shape();
    return record("slice", value().slice(d, start, end), {*this},
                  [s, d, start, end](const Tensor& g, const std::vector<bool>&) {
                      Tensor z = Tensor::zeros(s);
                      z.slice(d, start, end).copy_(g);  // the same (clamped) window as the forward
                      return one(z);
                  });
}

Var Var::select(int64_t d, int64_t index) const {
    const Shape s = shape();
    return record("select", value().select(d, index), {*this}, [s, d, index](const Tensor& g, const std::vector<bool>&) {
        Tensor z = Tensor::zeros(s);
        z.select(d, index).copy_(g);
        return one(z);
    });
}

Var Var::expand(const Shape& shape_to) const {
    const Shape s = shape();
    return record("expand", value().expand(shape_to), {*this},
                  [s](const Tensor& g, const std::vector<bool>&) { return one(reduce_to_shape(g, s)); });
}

Var Var::contiguous() const {
    if (value().is_contiguous()) return *this;
    return record("contiguous", value().contiguous(), {*this},
                  [](const Tensor& g, const std::vector<bool>&) { return one(g); });
}

Var Var::channels_last() const {
    if (value().is_channels_last()) return *this;
    return record("channels_last", value().channels_last(), {*this},
                  [](const Tensor& g, const std::vector<bool>&) { return one(g); });
}

Var cat(const std::vector<Var>& vs, int64_t dim) {
    NUANCE_CHECK(!vs.empty(), "cat: no tensors");
    std::vector<Tensor> ts;
    for (const Var& v : vs) {
        NUANCE_CHECK(v.defined(), "cat: undefined input");
        ts.push_back(v.value());
    }
    Tensor y = cat(ts, dim);  // checks the shapes
    dim = normalize_dim(dim, y.dim());
    std::vector<int64_t> sizes;
    for (const Tensor& t : ts) sizes.push_back(t.size(dim));
    return record("cat", std::move(y), vs, [sizes, dim](const Tensor& g, const std::vector<bool>& need) {
        std::vector<Tensor> out(sizes.size());
        int64_t off = 0;
        for (size_t i = 0; i < sizes.size(); ++i) {
            if (need[i]) out[i] = g.slice(dim, off, off + sizes[i]);
            off += sizes[i];
        }
        return out;
    });
}

std::vector<Var> chunk(const Var& v, int64_t n, int64_t dim) {
    const std::vector<Tensor> parts = chunk(v.value(), n, dim);  // checks divisibility
    dim = normalize_dim(dim, v.dim());
    std::vector<Var> out;
    int64_t off = 0;
    for (const Tensor& p : parts) {
        out.push_back(v.slice(dim, off, off + p.size(dim)));
        off += p.size(dim);
    }
    return out;
}

Var interpolate_nearest(const Var& x, int64_t oh, int64_t ow) {
    NUANCE_CHECK(x.defined(), "interpolate_nearest: undefined input");
    Tensor y = interpolate_nearest(x.value(), oh, ow);  // checks the shapes
    const Shape s = x.shape();
    return record("interpolate_nearest", std::move(y), {x}, [s, oh, ow](const Tensor& g_in, const std::vector<bool>&) {
        const int64_t N = s[0], C = s[1], H = s[2], W = s[3];
        // the forward's index rule (torch 'nearest'): src = min(floor(dst·in/out), in − 1), exact halving for 2x
        auto idx = [](int64_t o, int64_t in, int64_t out) -> int64_t {
            if (in == out) return o;
            if (out == 2 * in) return o >> 1;
            return std::min((int64_t)std::floor((float)o * ((float)in / (float)out)), in - 1);
        };
        std::vector<int64_t> iy((size_t)oh), ix((size_t)ow);
        for (int64_t i = 0; i < oh; ++i) iy[(size_t)i] = idx(i, H, oh);
        for (int64_t j = 0; j < ow; ++j) ix[(size_t)j] = idx(j, W, ow);
        const Tensor g = g_in.f32().contiguous();
        Tensor dx = Tensor::zeros(s);
        const float* pg = g.data<float>();
        float* pd = dx.data<float>();
#pragma omp parallel for schedule(static)
        for (int64_t nc = 0; nc < N * C; ++nc)
            for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j)
                    pd[nc * H * W + iy[(size_t)i] * W + ix[(size_t)j]] += pg[(nc * oh + i) * ow + j];
        return one(dx);
    });
}

Var pad2d(const Var& x, int64_t left, int64_t right, int64_t top, int64_t bottom, float value) {
    NUANCE_CHECK(x.defined(), "pad2d: undefined input");
    Tensor y = pad2d(x.value(), left, right, top, bottom, value);  // checks rank and signs
    const int64_t H = x.size(2), W = x.size(3);
    return record("pad2d", std::move(y), {x}, [left, top, H, W](const Tensor& g, const std::vector<bool>&) {
        return one(g.slice(2, top, top + H).slice(3, left, left + W));
    });
}

Var embedding(const Tensor& ids, const Var& weight) {
    NUANCE_CHECK(weight.defined(), "embedding: undefined weight");
    Tensor y = embedding(ids, weight.value());  // checks the ids against the vocabulary
    const std::vector<int64_t> id = ids.to_ids();
    const Shape ws = weight.shape();
    return record("embedding", std::move(y), {weight}, [id, ws](const Tensor& g_in, const std::vector<bool>&) {
        // scatter-add: a token that occurs twice gets both rows' gradients
        const int64_t D = ws[1];
        const Tensor g = g_in.f32().contiguous();
        Tensor dw = Tensor::zeros(ws);
        const float* pg = g.data<float>();
        float* pd = dw.data<float>();
        for (size_t i = 0; i < id.size(); ++i)
            for (int64_t j = 0; j < D; ++j) pd[id[i] * D + j] += pg[(int64_t)i * D + j];
        return one(dw);
    });
}

}  // namespace nuance
