// Reductions and losses on Var. Shape letters: none (any shape); n = number of elements reduced.
#include "autograd/functions.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

// The gradient of a reduction broadcast back to the input: g (reduced shape) -> input shape, materialised.
Tensor spread(const Tensor& g, const Shape& in_shape, int64_t dim, bool keepdim) {
    Tensor t = keepdim ? g : g.unsqueeze(dim);
    return t.expand(in_shape).contiguous();
}

}  // namespace

Var sum(const Var& a) {
    const Shape s = a.shape();
    return record("sum", Tensor::scalar((float)sum_all(a.value())), {a}, [s](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{Tensor::full(s, g.item())};
    });
}

Var mean(const Var& a) {
    const Shape s = a.shape();
    const int64_t n = a.numel();
    NUANCE_CHECK(n > 0, "mean: empty tensor ", s);
    return record("mean", Tensor::scalar((float)mean_all(a.value())), {a},
                  [s, n](const Tensor& g, const std::vector<bool>&) {
                      return std::vector<Tensor>{Tensor::full(s, g.item() / (float)n)};
                  });
}

Var sum(const Var& a, int64_t dim, bool keepdim) {
    const Shape s = a.shape();
    dim = normalize_dim(dim, a.dim());
    return record("sum_dim", sum(a.value(), dim, keepdim), {a}, [s, dim, keepdim](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{spread(g, s, dim, keepdim)};
    });
}

Var mean(const Var& a, int64_t dim, bool keepdim) {
    const Shape s = a.shape();
    dim = normalize_dim(dim, a.dim());
    const int64_t n = s[(size_t)dim];
    NUANCE_CHECK(n > 0, "mean: dim ", dim, " of ", s, " is empty");
    return record("mean_dim", mean(a.value(), dim, keepdim), {a},
                  [s, dim, keepdim, n](const Tensor& g, const std::vector<bool>&) {
                      return std::vector<Tensor>{spread(mul(g, 1.0f / (float)n), s, dim, keepdim)};
                  });
}

Var mse_loss(const Var& pred, const Var& target) {
    NUANCE_CHECK(pred.shape() == target.shape(), "mse_loss: pred ", pred.shape(), " and target ", target.shape(),
                 " must have the same shape");
    const int64_t n = pred.numel();
    NUANCE_CHECK(n > 0, "mse_loss: empty tensors ", pred.shape());
    const Tensor d = sub(pred.value(), target.value());
    return record("mse_loss", Tensor::scalar((float)mean_all(square(d))), {pred, target},
                  [d, n](const Tensor& g, const std::vector<bool>& need) {
                      // d/dpred mean((p - t)^2) = 2(p - t)/n
                      const Tensor gp = mul(d, 2.0f * g.item() / (float)n);
                      return std::vector<Tensor>{need[0] ? gp : Tensor(), need[1] ? mul(gp, -1.0f) : Tensor()};
                  });
}

Var l1_loss(const Var& pred, const Var& target) {
    NUANCE_CHECK(pred.shape() == target.shape(), "l1_loss: pred ", pred.shape(), " and target ", target.shape(),
                 " must have the same shape");
    const int64_t n = pred.numel();
    NUANCE_CHECK(n > 0, "l1_loss: empty tensors ", pred.shape());
    const Tensor d = sub(pred.value(), target.value());
    return record("l1_loss", Tensor::scalar((float)mean_all(abs(d))), {pred, target},
                  [d, n](const Tensor& g, const std::vector<bool>& need) {
                      // d/dpred mean|p - t| = sign(p - t)/n (0 at a tie, like torch)
                      const float s = g.item() / (float)n;
                      Tensor gp = d.clone();
                      float* p = gp.data<float>();
                      for (int64_t i = 0; i < gp.numel(); ++i) p[i] = p[i] > 0 ? s : (p[i] < 0 ? -s : 0.0f);
                      return std::vector<Tensor>{need[0] ? gp : Tensor(), need[1] ? mul(gp, -1.0f) : Tensor()};
                  });
}

}  // namespace nuance
