// The Cayley transform of square blocks: R = (I + Q)(I - Q)^-1 for each b x b block of Q [..., b, b] (an orthogonal
// R when Q is skew-symmetric, as OFT / BOFT adapters make it). Double precision inside (Gauss-Jordan with partial
// pivoting); F32 results. Throws when a block's I - Q is singular (never for a skew Q: its eigenvalues are imaginary).
#pragma once
#include "core/tensor.h"

namespace nuance {

struct CayleyResult {
    Tensor r;    // (I + Q)(I - Q)^-1, F32 [..., b, b]
    Tensor inv;  // (I - Q)^-1, F32 [..., b, b] (the backward rule needs it)
};
CayleyResult cayley(const Tensor& q);

}  // namespace nuance
