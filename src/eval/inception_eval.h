// Inception features of an image source, batch by batch, and the Inception Score: what `nuance eval fid|kid|is`
// and `nuance eval sweep` compute (apps/cli/cmd_eval_fid.cpp).
//   IS  torchmetrics' InceptionScore (default feature 'logits_unbiased' = pool3 fc.weight^T, splits 10): softmax
//       per image, the images in order cut into torch.chunk(splits) pieces (size ceil(N / splits); fewer pieces when
//       N is small), per piece exp(mean_i KL(p_i || mean p)), then the mean and the unbiased (N-1) standard
//       deviation over the pieces. torchmetrics shuffles the images first (torch.randperm); nuance keeps the
//       source's order (sorted file names / seed order), so a run is reproducible.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eval/image_source.h"
#include "eval/inception/inception.h"
#include "eval/inception/resize.h"

namespace nuance {

struct FeatureProgress {
    int64_t done = 0, total = 0;
    double elapsed_s = 0;
};

struct FeatureRun {
    Tensor pool3;   // [N, 2048] F32
    Tensor logits;  // [N, classes] 'logits_unbiased' (want_logits)
    std::vector<Image> kept;  // the first `keep` images (contact sheets)
    double seconds = 0;
    double network_seconds = 0;  // inside the network (no decoding, resizing or generation)
    double first_batch_seconds = 0;  // network time of batch 0 (includes packing the weights for oneDNN once)
};

// batch: images per network call (1..256).
FeatureRun inception_features(const InceptionV3& net, const ImageSource& src, InceptionResize resize, int64_t batch,
                              bool want_logits, int keep = 0,
                              const std::function<void(const FeatureProgress&)>& on_progress = {});

struct InceptionScore {
    double mean = 0, std = 0;
    int splits = 0;  // pieces actually used
};
InceptionScore inception_score(const Tensor& logits, int splits = 10);

}  // namespace nuance
