// The feature networks of `nuance eval` and how images reach them. A FeatureExtractor turns a batch of RGB images into
// [N, D] features (and, where the network has a classifier head, [N, K] logits); FID, KID, IS and precision/recall
// are computed on those rows. Two networks are built in:
//   inception          pytorch-fid's FID Inception v3 (src/eval/inception), pool3 2048-d, logits_unbiased of the fc
//                      head; the images go through one of the libraries' resizes first (--resize).
//   emoji-classifier   nuance's emoji classifier (train/emoji_classifier.h), 128-d pooled features and its 9 class
//                      logits, on 32 px images: what `nuance eval-emoji` measures with (--features
//                      emoji-classifier:FILE).
//
// extract_features() runs a source through a network batch by batch; under mpirun (src/dist) every rank takes a
// contiguous shard of the images (the same images with the same seeds as one process), and rank 0 gathers the rows
// in source order (and the first `keep` images for contact sheets). Non-root ranks get `complete == false`.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "eval/image_source.h"
#include "eval/inception/inception.h"
#include "eval/inception/resize.h"
#include "io/image.h"

namespace nuance {

class FeatureExtractor {
public:
    virtual ~FeatureExtractor() = default;
    virtual std::string name() const = 0;  // e.g. "inception (clean resize)", "emoji-classifier"
    virtual int64_t dim() const = 0;       // D
    virtual int64_t num_logits() const = 0;  // K, 0 when the network has no classifier head
    struct Output {
        Tensor features;  // [N, D] F32
        Tensor logits;    // [N, K] F32 (want_logits)
    };
    virtual Output extract(const std::vector<Image>& images, bool want_logits) const = 0;
};

// pytorch-fid's Inception (pt_inception .pth or the same keys as .safetensors). Logits are 'logits_unbiased'.
std::unique_ptr<FeatureExtractor> make_inception_extractor(const std::string& weights, const std::string& resize,
                                                           Precision precision = Precision::FP32);
std::unique_ptr<FeatureExtractor> make_inception_extractor(InceptionV3 net, InceptionResize resize);
// The emoji classifier `nuance train-classifier` writes (its class names must be the emoji set's 9 categories).
std::unique_ptr<FeatureExtractor> make_emoji_classifier_extractor(const std::string& weights);
struct LoadedClassifier;
std::unique_ptr<FeatureExtractor> make_emoji_classifier_extractor(LoadedClassifier classifier);

// --features SPEC: "inception" (weights from `inception_weights`, Error naming --inception when empty) or
// "emoji-classifier:FILE". Unknown names are a usage error listing the known ones.
std::unique_ptr<FeatureExtractor> make_feature_extractor(const std::string& spec, const std::string& inception_weights,
                                                         const std::string& resize, Precision precision);

struct FeatureProgress {
    int64_t done = 0, total = 0;  // this rank's images
    double elapsed_s = 0;
};

struct FeatureRun {
    Tensor features;  // [N, D] F32, rows in source order (rank 0 / one process)
    Tensor logits;    // [N, K] (want_logits)
    std::vector<Image> kept;  // the first `keep` images of the source (contact sheets)
    bool complete = true;     // false on ranks other than 0 of an mpirun: they hold nothing
    int ranks = 1;
    double seconds = 0;
    double network_seconds = 0;      // inside the network on this rank (no decoding, resizing or generation)
    double first_batch_seconds = 0;  // network time of this rank's first batch (includes packing the weights once)
    // The same as CPU time of the process (all threads): on a machine shared with other work, wall time measures
    // the load as much as the network, CPU time far less (single-threaded, it has no barrier spinning either).
    double network_cpu_seconds = 0, first_batch_cpu_seconds = 0;
};

// Runs fn(images, index of the first) over this rank's shard of `src` (all of it in one process), `batch` images at
// a time, in order. Collective under mpirun: every rank must call it with the same source. An error on any rank (a
// bad image, a failed generation) becomes an Error on every rank, so none waits for the others forever.
using BatchFn = std::function<void(const std::vector<Image>& images, int64_t first)>;
void for_each_batch(const ImageSource& src, int64_t batch, const BatchFn& fn, const std::string& what);

// batch: images per network call (1..256). Collective, as for_each_batch. `also`, when set, sees every batch too
// (e.g. the sweep's CLIP score of the same images, so they are generated once).
FeatureRun extract_features(const FeatureExtractor& net, const ImageSource& src, int64_t batch, bool want_logits,
                            int keep = 0, const std::function<void(const FeatureProgress&)>& on_progress = {},
                            const BatchFn& also = {});

// The rows [begin, end) of this rank's shard of `n` items (all of them in one process).
struct ShardRange {
    int64_t begin = 0, end = 0;
};
ShardRange my_shard(int64_t n);

// Rank 0 gets every rank's values concatenated in rank order (the others an empty vector); in one process the
// values themselves. Collective.
std::vector<double> gather_doubles(const std::vector<double>& mine);
std::vector<Image> gather_images(const std::vector<Image>& mine);

// Agrees on failure across ranks: rethrows this rank's error, or throws one saying which rank failed, when any did.
// `what` names the phase. A no-op in one process (the error, if any, is rethrown).
void agree_on_errors(const std::exception_ptr& mine, const std::string& what);

}  // namespace nuance
