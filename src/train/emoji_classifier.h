// A small CNN that tells the emoji set's 9 categories (emoji_categories(): Smileys & Emotion ... Flags) apart, trained
// on data/emoji. It is the feature network of `nuance eval-emoji`: its 128-d pooled features stand in for
// Inception's in FID/KID (an Inception network is neither available nor meaningful on 32 px icons), and its
// accuracy on generated images says whether a prompt's category came through. Numbers made with it compare
// models with each other on this data set only; they are not comparable with published Inception FIDs.
//
// Architecture (all convs 3x3, padding 1; GN = GroupNorm(8 groups) fused with SiLU):
//   x [B, 3, 32, 32] -> conv 3->32 -> GN -> conv 32->64 /2 -> GN -> conv 64->64 -> GN -> conv 64->128 /2 -> GN
//   -> conv 128->128 /2 -> GN -> mean over H, W -> features [B, 128] -> head Linear 128->classes -> logits.
// Parameter names: convs.<i>.weight/bias, norms.<i>.weight/bias, head.weight/bias.
//
// Held-out split: manifest rows with concept_id % 10 == 0 (both styles of a concept, and all its skin tones, share
// one concept_id, so a held-out emoji is unseen in every style): 822 of the 7,562 images.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/var.h"
#include "io/image.h"
#include "nn/layers.h"
#include "train/dataset.h"

namespace nuance {

class EmojiClassifier : public Module {
public:
    static constexpr int64_t kFeatures = 128;
    explicit EmojiClassifier(int64_t num_classes);

    struct Output {
        Tensor features;  // [B, 128]
        Tensor logits;    // [B, classes]
    };
    // Inference. x: [B, 3, H, W] in [-1, 1] (trained at 32x32).
    Output forward(const Tensor& x) const;
    // Training, through autograd (weights via param_var(): bind a ParamGrads). Returns the logits; `features`,
    // when given, receives the pooled features.
    Var forward(const Var& x, Var* features = nullptr);

    int64_t num_classes() const { return head_.out_features(); }
    void visit(ParamVisitor& v) override;

private:
    std::vector<Conv2d> convs_;
    std::vector<GroupNorm> norms_;
    Linear head_;
};

// Mean cross-entropy of logits [B, C] against class indices (B of them, each in [0, C)), as
// torch.nn.functional.cross_entropy: log-softmax computed as z - log(sum(exp(z))) with z = logits - max (the max
// taken from the values, a constant for the gradient), so it never overflows.
Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets);

// Per-row labels of an emoji manifest (rows need integer category_id and concept_id, and a style).
struct EmojiLabels {
    std::vector<int64_t> category, concept_id;
    std::vector<std::string> style;
};
EmojiLabels emoji_labels(const ImageCaptionDataset& data, int64_t num_classes);
inline bool emoji_heldout(int64_t concept_id) { return concept_id % 10 == 0; }

// Images -> [B, 3, 32, 32] F32 in [-1, 1] (other sizes are resized and center-cropped to 32 first).
Tensor emoji_images_to_batch(const std::vector<Image>& images);

// Runs the classifier over many inputs in batches of `batch` (no gradient).
EmojiClassifier::Output classify(const EmojiClassifier& net, const Tensor& images, int64_t batch = 256);

struct ClassAccuracy {
    double accuracy = 0;           // fraction correct
    double balanced_accuracy = 0;  // mean over the classes present of their recall (the set is 60% People & Body)
    int64_t count = 0;
    std::vector<int64_t> predicted;  // argmax per row
};
ClassAccuracy class_accuracy(const Tensor& logits, const std::vector<int64_t>& targets);

// ---- training ----

struct ClassifierTrainOptions {
    std::string data;    // the emoji folder (manifest.jsonl with category_id and concept_id)
    std::string output;  // .safetensors; empty: not saved
    int epochs = 12;  // ~20 s each on one core (7,562 images)
    int batch = 64;
    float lr = 2e-3f;
    float weight_decay = 0.05f;
    int64_t warmup = 50;
    bool flip = true;     // random horizontal flips of the training images
    uint64_t seed = 0;
    int64_t limit = 0;    // > 0: only the first `limit` manifest rows (tests)
};

struct ClassifierTrainProgress {
    int64_t step = 0, total = 0;
    int epoch = 0;
    double loss = 0, loss_avg = 0, elapsed_s = 0;
};

struct ClassifierTrainReport {
    int64_t steps = 0, train_images = 0, heldout_images = 0;
    double first_loss = 0, last_loss = 0;  // mean over the first / last min(20, steps / 4) steps
    double train_accuracy = 0, heldout_accuracy = 0, heldout_balanced_accuracy = 0;
    double seconds = 0;
};

ClassifierTrainReport train_emoji_classifier(const ClassifierTrainOptions& o,
                                             const std::function<void(const ClassifierTrainProgress&)>& on_step = {});

// Safetensors with the weights and metadata: format "nuance-emoji-classifier", classes (JSON list of names),
// plus every entry of `metadata`.
void save_emoji_classifier(const std::string& path, EmojiClassifier& net, const std::vector<std::string>& classes,
                           const std::map<std::string, std::string>& metadata = {});

struct LoadedClassifier {
    std::unique_ptr<EmojiClassifier> net;
    std::vector<std::string> classes;
    std::map<std::string, std::string> metadata;
};
// Checks the format tag, that every tensor is there with its shape and nothing else is, and (expected_classes
// non-empty) that the class list is exactly `expected_classes`.
LoadedClassifier load_emoji_classifier(const std::string& path, const std::vector<std::string>& expected_classes = {});

}  // namespace nuance
