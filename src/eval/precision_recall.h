// Improved precision and recall (Kynkäänniemi et al. 2019, NVlabs/improved-precision-recall-metric) on feature
// vectors (Inception pool3 or any other), plus density and coverage (Naeem et al. 2020, the `prdc` package), all
// from k-NN manifolds:
//   radius(x)  = distance from x to its k-th nearest neighbour in its own set (itself excluded);
//   precision  = share of fake samples inside some real sample's ball: exists r: d(f, r) <= radius(r);
//   recall     = share of real samples inside some fake sample's ball: exists f: d(r, f) <= radius(f);
//   density    = 1 / (k M) * sum_f #{r : d(f, r) <= radius(r)};
//   coverage   = share of real samples whose nearest fake sample lies inside their own ball.
// Distances are Euclidean, in double. A point on a ball's surface counts as inside (the authors' `<=`; `prdc` uses
// `<`, which differs only on exact ties).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct PrecisionRecall {
    double precision = 0, recall = 0, density = 0, coverage = 0;
    int64_t k = 3, n_real = 0, n_fake = 0;
};

// real: [N, D], fake: [M, D] float features. 1 <= k < min(N, M); every value finite; D equal. Errors name the
// sizes and k.
PrecisionRecall precision_recall(const Tensor& real, const Tensor& fake, int64_t k = 3);

// The k-th nearest-neighbour distance of every row of x [N, D] within x (itself excluded): the radii above.
std::vector<double> knn_radii(const Tensor& x, int64_t k);

}  // namespace nuance
