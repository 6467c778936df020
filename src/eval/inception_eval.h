// The Inception Score on the logits extract_features() (eval/feature_extractor.h) returns: what `nuance eval is`
// computes (apps/cli/cmd_eval_fid.cpp).
//   IS  torchmetrics' InceptionScore (default feature 'logits_unbiased' = pool3 fc.weight^T, splits 10): softmax
//       per image, the images in order cut into torch.chunk(splits) pieces (size ceil(N / splits); fewer pieces when
//       N is small), per piece exp(mean_i KL(p_i || mean p)), then the mean and the unbiased (N-1) standard
//       deviation over the pieces. torchmetrics shuffles the images first (torch.randperm); nuance keeps the
//       source's order (sorted file names / seed order), so a run is reproducible.
#pragma once
#include "core/tensor.h"

namespace nuance {

struct InceptionScore {
    double mean = 0, std = 0;
    int splits = 0;  // pieces actually used
};
InceptionScore inception_score(const Tensor& logits, int splits = 10);

}  // namespace nuance
