// Elementwise ops on Var. Shape letters: none (any shape); binary ops broadcast like numpy, and their backward sums
// the gradient back over the broadcast dims (reduce_to_shape).
#include <cmath>

#include "autograd/functions.h"
#include "backends/backend.h"
#include "ops/elementwise.h"

namespace nuance {

namespace {

// out[i] = f(x[i], g[i]) over two same-shape tensors (the pointwise part of a unary op's backward rule).
template <class F>
Tensor zip(const Tensor& x_in, const Tensor& g_in, F f) {
    NUANCE_ASSERT(x_in.shape() == g_in.shape(), "zip ", x_in.shape(), " vs ", g_in.shape());
    const Tensor x = x_in.f32().contiguous(), g = g_in.f32().contiguous();
    Tensor out = Tensor::empty(x.shape(), DType::F32);
    const float* px = x.data<float>();
    const float* pg = g.data<float>();
    float* po = out.data<float>();
    const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = f(px[i], pg[i]);
    return out;
}

// A unary op whose derivative is a function of its input x: dy/dx = d(x).
template <class D>
Var unary_x(const char* name, const Var& a, Tensor y, D d) {
    const Tensor x = a.value();
    return record(name, std::move(y), {a}, [x, d](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{zip(x, g, [d](float xv, float gv) { return gv * d(xv); })};
    });
}

// A unary op whose derivative is a function of its output y: dy/dx = d(y).
template <class D>
Var unary_y(const char* name, const Var& a, Tensor y, D d) {
    const Tensor yv = y;
    return record(name, std::move(y), {a}, [yv, d](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{zip(yv, g, [d](float y_, float gv) { return gv * d(y_); })};
    });
}

// An activation whose backward rule is the backend's activation_backward (vectorised on the CPU).
Var activation(const char* name, UnaryOp op, const Var& a, Tensor y) {
    const Tensor x = a.value();
    return record(name, std::move(y), {a}, [x, op, name](const Tensor& g, const std::vector<bool>&) {
        return std::vector<Tensor>{backend_for(op_device(name, {&x, &g})).activation_backward(op, x, g)};
    });
}

}  // namespace

// ---- binary, broadcasting ----

Var add(const Var& a, const Var& b) {
    const Shape sa = a.shape(), sb = b.shape();
    return record("add", add(a.value(), b.value()), {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& need) {
        return std::vector<Tensor>{need[0] ? reduce_to_shape(g, sa) : Tensor(),
                                   need[1] ? reduce_to_shape(g, sb) : Tensor()};
    });
}

Var sub(const Var& a, const Var& b) {
    const Shape sa = a.shape(), sb = b.shape();
    return record("sub", sub(a.value(), b.value()), {a, b}, [sa, sb](const Tensor& g, const std::vector<bool>& need) {
        return std::vector<Tensor>{need[0] ? reduce_to_shape(g, sa) : Tensor(),
                                   need[1] ? reduce_to_shape(mul(g, -1.0f), sb) : Tensor()};
    });
}

Var mul(const Var& a, const Var& b) {
    const Tensor x = a.value(), y = b.value();
    return record("mul", mul(x, y), {a, b}, [x, y](const Tensor& g, const std::vector<bool>& need) {
        // d(xy)/dx = y, d(xy)/dy = x
        return std::vector<Tensor>{need[0] ? reduce_to_shape(mul(g, y), x.shape()) : Tensor(),
                                   need[1] ? reduce_to_shape(mul(g, x), y.shape()) : Tensor()};
    });
}

Var div(const Var& a, const Var& b) {
    const Tensor x = a.value(), y = b.value();
    return record("div", div(x, y), {a, b}, [x, y](const Tensor& g, const std::vector<bool>& need) {
        // d(x/y)/dx = 1/y, d(x/y)/dy = -x/y^2
        return std::vector<Tensor>{need[0] ? reduce_to_shape(div(g, y), x.shape()) : Tensor(),
                                   need[1] ? reduce_to_shape(mul(g, div(mul(x, -1.0f), square(y))), y.shape())
                                           : Tensor()};
    });
}

// ---- with a scalar ----

Var add(const Var& a, float s) {
    return record("add_scalar", add(a.value(), s), {a},
                  [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Var mul(const Var& a, float s) {
    return record("mul_scalar", mul(a.value(), s), {a},
                  [s](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{mul(g, s)}; });
}

Var rsub(float s, const Var& a) {
    return record("rsub", rsub(s, a.value()), {a},
                  [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{mul(g, -1.0f)}; });
}

// ---- unary ----

Var exp(const Var& a) { return unary_y("exp", a, exp(a.value()), [](float y) { return y; }); }
Var log(const Var& a) { return unary_x("log", a, log(a.value()), [](float x) { return 1.0f / x; }); }
Var sqrt(const Var& a) { return unary_y("sqrt", a, sqrt(a.value()), [](float y) { return 0.5f / y; }); }
Var square(const Var& a) { return unary_x("square", a, square(a.value()), [](float x) { return 2.0f * x; }); }
Var abs(const Var& a) {
    return unary_x("abs", a, abs(a.value()), [](float x) { return x > 0 ? 1.0f : (x < 0 ? -1.0f : 0.0f); });
}
Var tanh(const Var& a) { return unary_y("tanh", a, tanh(a.value()), [](float y) { return 1.0f - y * y; }); }
Var sigmoid(const Var& a) { return unary_y("sigmoid", a, sigmoid(a.value()), [](float y) { return y * (1.0f - y); }); }
Var relu(const Var& a) { return unary_x("relu", a, relu(a.value()), [](float x) { return x > 0 ? 1.0f : 0.0f; }); }

// d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
Var silu(const Var& a) { return activation("silu", UnaryOp::Silu, a, silu(a.value())); }

// d/dx x·Φ(x) = Φ(x) + x·φ(x)
Var gelu(const Var& a) { return activation("gelu", UnaryOp::Gelu, a, gelu(a.value())); }

// y = ½x(1 + tanh u), u = k(x + 0.044715x³):  dy/dx = ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715x²)
Var gelu_tanh(const Var& a) { return activation("gelu_tanh", UnaryOp::GeluTanh, a, gelu_tanh(a.value())); }

// d/dx x·σ(1.702x) = s + 1.702·x·s(1 − s)
Var quick_gelu(const Var& a) { return activation("quick_gelu", UnaryOp::QuickGelu, a, quick_gelu(a.value())); }

Var clamp(const Var& a, float lo, float hi) {
    NUANCE_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
    // torch passes the gradient where lo <= x <= hi
    return unary_x("clamp", a, clamp(a.value(), lo, hi),
                   [lo, hi](float x) { return x >= lo && x <= hi ? 1.0f : 0.0f; });
}

}  // namespace nuance
