// pytorch-fid's FID Inception v3 (pytorch_fid.inception.fid_inception_v3: torchvision's Inception3 with the TF
// 2015-12-05 graph's quirks: FIDInceptionA/C/E_1 average-pool with count_include_pad=False, FIDInceptionE_2
// (Mixed_7c) max-pools its pool branch), for FID/KID/IS features.
// Weights: the state dict of pt_inception-2015-12-05-6726825d.pth (torch zip, read through the safe unpickler) or
// the same keys in a .safetensors; torchvision's inception_v3_google weights have the same layout (AuxLogits.* is
// ignored) and load too, but run through this FID network (its pooling quirks), not torchvision's own.
// Every BasicConv2d (conv without bias -> BatchNorm(eps 0.001) -> ReLU) is folded at load into one convolution
// with a bias (w * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps)), run by oneDNN channels-last.
// Shape letters: N images, C channels, H/W spatial (the network's input is [N, 3, 299, 299], values in [-1, 1]).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace nuance {

struct InceptionFeatures {
    Tensor pool3;                     // [N, 2048] adaptive average pool of Mixed_7c
    std::array<Tensor, 3> block_pool;  // (want_blocks) [N, 64], [N, 192], [N, 768]: blocks 0..2 average-pooled
    Tensor block1_full, block2_full;  // (want_blocks) [N, 192, 35, 35], [N, 768, 17, 17] (NCHW, contiguous)
    Tensor logits;                    // (want_logits and a fc head loaded) [N, num_classes] = pool3 fc.weight^T + b
    Tensor logits_unbiased;           // (want_logits) pool3 fc.weight^T (torch-fidelity's 'logits_unbiased')
};

class InceptionV3 {
public:
    // From a weight file (anything load_weights reads). `source` names it in messages.
    static InceptionV3 load(const std::string& path);
    static InceptionV3 from_tensors(const std::map<std::string, Tensor>& tensors, const std::string& source);
    InceptionV3();
    ~InceptionV3();
    InceptionV3(InceptionV3&&) noexcept;
    InceptionV3& operator=(InceptionV3&&) noexcept;

    bool has_fc() const;
    int64_t num_classes() const;  // 0 without an fc head (1008 for pt_inception, 1000 for torchvision)
    // Precision of the convolutions: FP32 (default; what FID needs) or BF16 (bf16 products, f32 accumulation).
    void set_compute(Precision p);
    // x: [N, 3, 299, 299] already resized and normalised to the network's [-1, 1] range (any layout, F32).
    InceptionFeatures forward(const Tensor& x, bool want_blocks = false, bool want_logits = false) const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace nuance
