// LPIPS v0.1 (Zhang et al. 2018; richzhang/PerceptualSimilarity, the pip `lpips` package): a perceptual distance
// between images from the channel-normalised activations of a fixed trunk (torchvision AlexNet or VGG16 features)
// weighted by the learned 1x1 "lin" layers.
//   x -> (x - shift) / scale -> trunk; at each of the 5 taps f_k: n = f / (sqrt(sum_c f^2) + 1e-10);
//   diff_k = (n0 - n1)^2; term_k = mean_hw(lin_k(diff_k)); dist = sum_k term_k.
// Key names are the lpips package's state dict: net.slice{s}.{i}.weight/bias (i = torchvision's features index),
// lin{k}.model.1.weight [1, C_k, 1, 1], scaling_layer.shift/scale. Loads from the files users have: the package's
// alex.pth / vgg.pth (lin layers only) plus torchvision's alexnet-owt-7be5be79.pth / vgg16-397923af.pth
// (features.{i}.*), or one file with everything (a saved LPIPS state dict, with or without the lins.{k} aliases).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace nuance {

enum class LpipsNet { Alex, Vgg };
LpipsNet parse_lpips_net(const std::string& name);  // "alex" | "vgg" (also "vgg16"); Error naming the value
const char* lpips_net_name(LpipsNet n);

struct LpipsResult {
    Tensor dist;                     // [N, 1, 1, 1] the distance per pair
    std::vector<Tensor> per_layer;   // 5 x [N, 1, 1, 1] terms (dist is their sum)
    std::vector<Tensor> diffs;       // 5 x [N, C_k, h_k, w_k] normalised squared differences (keep_diffs)
    Tensor spatial;                  // [N, 1, H, W] sum_k bilinear-upsampled lin_k(diff_k) (spatial)
};

struct LpipsOptions {
    bool keep_diffs = false;
    bool spatial = false;
};

class Lpips : public Module {
public:
    explicit Lpips(LpipsNet net);
    LpipsNet net() const { return net_; }
    // Channels of the 5 taps: alex 64,192,384,256,256; vgg 64,128,256,512,512.
    const std::vector<int64_t>& channels() const { return chns_; }

    // in0, in1: [N, 3, H, W] images in [-1, 1] (any float dtype), same shape; H, W >= the trunk's minimum
    // (alex 31, vgg 16). Errors name the shapes.
    LpipsResult forward(const Tensor& in0, const Tensor& in1, const LpipsOptions& o = {}) const;
    // The 5 tap activations of the trunk for a batch [N, 3, H, W] in [-1, 1].
    std::vector<Tensor> features(const Tensor& x) const;

    void visit(ParamVisitor& v) override;

    // Scaling-layer constants (the package's; a file's scaling_layer.shift/scale replaces them when present).
    float shift[3] = {-0.030f, -0.088f, -0.188f};
    float scale[3] = {0.458f, 0.448f, 0.450f};

private:
    struct Stage {  // one torchvision features conv (index i) followed by ReLU, maybe preceded by a max-pool
        int64_t index = 0;
        bool pool_before = false;
        Conv2d conv;
    };
    LpipsNet net_;
    std::vector<int64_t> chns_;
    std::vector<Stage> stages_;
    std::vector<int> tap_after_;   // stage index after which tap k is taken
    std::vector<int> slice_of_;    // slice (1..5) of each stage
    std::vector<Conv2d> lins_;     // 1x1 C_k -> 1, no bias
    int pool_kernel_ = 3, pool_stride_ = 2;
    int64_t min_side_ = 16;
};

// The tensors of one or more files mapped onto the LPIPS key names: torchvision's "features.{i}.*" become
// "net.slice{s}.{i}.*", "lins.{k}.*" aliases become "lin{k}.*", "module." prefixes (DataParallel saves) are
// dropped; classifier.* (torchvision heads) is ignored. A name given twice with different tensors is an Error
// naming both files.
std::map<std::string, Tensor> lpips_tensors(LpipsNet net, const std::vector<std::string>& files);

// Builds the network and loads it from `files` (see lpips_tensors). Missing trunk or lin tensors are an Error naming
// the first missing key and the files read; unknown extra tensors are ignored.
Lpips load_lpips(LpipsNet net, const std::vector<std::string>& files);
// The same from tensors already in memory (tests, goldens). `source` names them in errors.
void load_lpips_tensors(Lpips& m, const std::map<std::string, Tensor>& tensors, const std::string& source);

}  // namespace nuance
