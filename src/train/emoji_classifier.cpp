// Shape letters: B batch, C classes, H/W image size, F = 128 features.
#include "train/emoji_classifier.h"

#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "autograd/nn_layers.h"
#include "autograd/param_grads.h"
#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "train/data_loader.h"
#include "train/emoji_dataset.h"
#include "train/optim.h"

namespace fs = std::filesystem;

namespace nuance {

namespace {

constexpr const char* kFormat = "nuance-emoji-classifier";
constexpr int kSide = 32;

// (in, out, stride) of the five convolutions.
struct ConvSpec {
    int64_t in, out, stride;
};
constexpr ConvSpec kConvs[] = {{3, 32, 1}, {32, 64, 2}, {64, 64, 1}, {64, 128, 2}, {128, 128, 2}};
constexpr int64_t kGroups = 8;

// A view of some rows of a data set (the training split), for the DataLoader.
class SubsetDataset final : public Dataset {
public:
    SubsetDataset(const Dataset& base, std::vector<int64_t> rows) : base_(base), rows_(std::move(rows)) {}
    int64_t size() const override { return (int64_t)rows_.size(); }
    Sample get(int64_t i, Mt19937& rng) const override { return base_.get(rows_[(size_t)i], rng); }
    std::string describe(int64_t i) const override { return base_.describe(rows_[(size_t)i]); }

private:
    const Dataset& base_;
    std::vector<int64_t> rows_;
};

// The rows' images, unflipped, as one [N, 3, 32, 32] tensor.
Tensor dataset_images(const ImageCaptionDataset& data, const std::vector<int64_t>& rows) {
    std::vector<Image> images;
    images.reserve(rows.size());
    for (int64_t r : rows) images.push_back(data.load_image(r));
    return emoji_images_to_batch(images);
}

std::vector<int64_t> pick(const std::vector<int64_t>& v, const std::vector<int64_t>& rows) {
    std::vector<int64_t> out;
    out.reserve(rows.size());
    for (int64_t r : rows) out.push_back(v[(size_t)r]);
    return out;
}

}  // namespace

// ---- the network ----

EmojiClassifier::EmojiClassifier(int64_t num_classes) {
    NUANCE_CHECK(num_classes >= 2 && num_classes <= 100000, "emoji classifier: class count must be in 2..100000, got ",
                 num_classes);
    for (const ConvSpec& c : kConvs) {
        convs_.emplace_back(c.in, c.out, 3, c.stride, 1);
        norms_.emplace_back(kGroups, c.out);
    }
    head_ = Linear(kFeatures, num_classes);
}

void EmojiClassifier::visit(ParamVisitor& v) {
    v("convs", convs_);
    v("norms", norms_);
    v("head", head_);
}

namespace {

// The one definition of the classifier's forward, on Tensor (evaluation) or Var (training) (nn/apply.h): returns the
// logits [B, C] and the pooled features [B, F].
template <class V>
V run_classifier(const std::vector<Conv2d>& convs, const std::vector<GroupNorm>& norms, const Linear& head, const V& x,
                 V& features) {
    NUANCE_CHECK(x.dim() == 4 && x.size(1) == 3, "emoji classifier: input must be [B, 3, H, W], got ", x.shape());
    V h = x;
    for (size_t i = 0; i < convs.size(); ++i) h = apply(norms[i], apply(convs[i], h), /*fuse_silu=*/true);
    features = mean(mean(h, 3), 2);  // [B, F]
    return apply(head, features);    // [B, C]
}

}  // namespace

EmojiClassifier::Output EmojiClassifier::forward(const Tensor& x) const {
    Output out;
    out.logits = run_classifier(convs_, norms_, head_, x, out.features);
    return out;
}

Var EmojiClassifier::forward(const Var& x, Var* features) {
    Var f;
    const Var logits = run_classifier(convs_, norms_, head_, x, f);
    if (features) *features = f;
    return logits;
}

Var cross_entropy(const Var& logits, const std::vector<int64_t>& targets) {
    NUANCE_CHECK(logits.defined() && logits.dim() == 2, "cross_entropy: logits must be [B, C], got ",
                 logits.defined() ? logits.shape() : Shape{});
    const int64_t B = logits.size(0), C = logits.size(1);
    NUANCE_CHECK(B >= 1 && (int64_t)targets.size() == B, "cross_entropy: ", targets.size(), " targets for ", B,
                 " rows of logits");
    const std::vector<float> v = logits.value().to_vector();
    std::vector<float> row_max((size_t)B), weight((size_t)(B * C), 0.0f);
    for (int64_t b = 0; b < B; ++b) {
        const int64_t t = targets[(size_t)b];
        NUANCE_CHECK(t >= 0 && t < C, "cross_entropy: target ", t, " of row ", b, " is not a class in [0, ", C, ")");
        float m = v[(size_t)(b * C)];
        for (int64_t c = 1; c < C; ++c) m = std::max(m, v[(size_t)(b * C + c)]);
        NUANCE_CHECK(std::isfinite(m), "cross_entropy: row ", b, " of the logits is not finite");
        row_max[(size_t)b] = m;
        weight[(size_t)(b * C + t)] = 1.0f / (float)B;  // picks log p[target] and averages over the batch
    }
    // log_softmax(x) = z - log(sum(exp(z))), z = x - max(x): exp(z) <= 1, and the sum >= 1 (the max's own term).
    const Var z = logits - Var(Tensor::from_vector(row_max, {B, 1}));
    const Var log_p = z - log(sum(exp(z), 1, /*keepdim=*/true));
    return -sum(log_p * Var(Tensor::from_vector(weight, {B, C})));
}

// ---- data ----

EmojiLabels emoji_labels(const ImageCaptionDataset& data, int64_t num_classes) {
    EmojiLabels l;
    const int64_t n = data.size();
    for (int64_t i = 0; i < n; ++i) {
        const nlohmann::json& m = data.record(i).meta;
        const auto integer = [&](const char* key) {
            NUANCE_CHECK(m.contains(key) && m[key].is_number_integer(), "emoji data: ", data.describe(i),
                         " has no integer '", key, "' (a manifest from `nuance prepare-emoji` is needed)");
            return m[key].get<int64_t>();
        };
        const int64_t category = integer("category_id");
        NUANCE_CHECK(category >= 0 && category < num_classes, "emoji data: ", data.describe(i), " has category_id ",
                     category, ", expected 0..", num_classes - 1);
        const int64_t concept_id = integer("concept_id");
        NUANCE_CHECK(concept_id >= 0, "emoji data: ", data.describe(i), " has a negative concept_id ", concept_id);
        l.category.push_back(category);
        l.concept_id.push_back(concept_id);
        l.style.push_back(m.contains("style") && m["style"].is_string() ? m["style"].get<std::string>() : "");
    }
    return l;
}

Tensor emoji_images_to_batch(const std::vector<Image>& images) {
    const int64_t n = (int64_t)images.size();
    Tensor out = Tensor::empty({n, 3, kSide, kSide});
    for (int64_t i = 0; i < n; ++i) {
        Image img = images[(size_t)i];
        NUANCE_CHECK(img.width > 0 && img.height > 0, "emoji classifier: image ", i, " is empty");
        if (img.channels != 3) img = composite_on_white(img);
        if (img.width != kSide || img.height != kSide) img = resize_and_crop(img, kSide, true, true);
        out.select(0, i).copy_(image_to_chw(img, false));
    }
    return out;
}

EmojiClassifier::Output classify(const EmojiClassifier& net, const Tensor& images, int64_t batch) {
    NUANCE_CHECK(batch >= 1, "classify: batch must be >= 1, got ", batch);
    NUANCE_CHECK(images.dim() == 4, "classify: images must be [N, 3, H, W], got ", images.shape());
    std::vector<Tensor> features, logits;
    for (int64_t s = 0; s < images.size(0); s += batch) {
        EmojiClassifier::Output o = net.forward(images.slice(0, s, std::min(images.size(0), s + batch)));
        features.push_back(o.features.contiguous());
        logits.push_back(o.logits.contiguous());
    }
    EmojiClassifier::Output out;
    if (features.empty()) {
        out.features = Tensor::zeros({0, EmojiClassifier::kFeatures});
        out.logits = Tensor::zeros({0, net.num_classes()});
        return out;
    }
    out.features = features.size() == 1 ? features[0] : cat(features, 0);
    out.logits = logits.size() == 1 ? logits[0] : cat(logits, 0);
    return out;
}

ClassAccuracy class_accuracy(const Tensor& logits, const std::vector<int64_t>& targets) {
    NUANCE_CHECK(logits.dim() == 2 && logits.size(0) == (int64_t)targets.size(), "class_accuracy: logits ",
                 logits.shape(), " for ", targets.size(), " targets");
    const int64_t n = logits.size(0), c = logits.size(1);
    const std::vector<float> v = logits.to_vector();
    ClassAccuracy a;
    a.count = n;
    std::vector<int64_t> seen((size_t)c, 0), right((size_t)c, 0);
    int64_t correct = 0;
    for (int64_t i = 0; i < n; ++i) {
        int64_t best = 0;
        for (int64_t k = 1; k < c; ++k)
            if (v[(size_t)(i * c + k)] > v[(size_t)(i * c + best)]) best = k;
        a.predicted.push_back(best);
        const int64_t t = targets[(size_t)i];
        NUANCE_CHECK(t >= 0 && t < c, "class_accuracy: target ", t, " is not a class in [0, ", c, ")");
        ++seen[(size_t)t];
        if (best == t) {
            ++correct;
            ++right[(size_t)t];
        }
    }
    if (n == 0) return a;
    a.accuracy = (double)correct / (double)n;
    int present = 0;
    for (int64_t k = 0; k < c; ++k)
        if (seen[(size_t)k] > 0) {
            a.balanced_accuracy += (double)right[(size_t)k] / (double)seen[(size_t)k];
            ++present;
        }
    a.balanced_accuracy /= present;
    return a;
}

// ---- training ----

ClassifierTrainReport train_emoji_classifier(const ClassifierTrainOptions& o,
                                             const std::function<void(const ClassifierTrainProgress&)>& on_step) {
    NUANCE_CHECK(o.epochs >= 1 && o.epochs <= 10000, "train-classifier: epochs must be in 1..10000, got ", o.epochs);
    NUANCE_CHECK(o.batch >= 1 && o.batch <= 4096, "train-classifier: batch must be in 1..4096, got ", o.batch);
    NUANCE_CHECK(o.lr > 0 && std::isfinite(o.lr), "train-classifier: lr must be positive, got ", o.lr);
    NUANCE_CHECK(!o.data.empty(), "train-classifier: no data folder given (--data)");
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<std::string>& classes = emoji_categories();
    const int64_t C = (int64_t)classes.size();

    DatasetOptions dopt;
    dopt.resolution = kSide;
    dopt.cache_images = true;
    dopt.random_flip = o.flip;
    const ImageCaptionDataset data(o.data, dopt);
    const EmojiLabels labels = emoji_labels(data, C);
    const int64_t n = o.limit > 0 ? std::min<int64_t>(o.limit, data.size()) : data.size();
    std::vector<int64_t> train_rows, held_rows;
    for (int64_t i = 0; i < n; ++i) (emoji_heldout(labels.concept_id[(size_t)i]) ? held_rows : train_rows).push_back(i);
    NUANCE_CHECK(train_rows.size() >= 2, "train-classifier: '", o.data, "' leaves ", train_rows.size(),
                 " training images after holding out concept_id % 10 == 0 (need >= 2)");

    ClassifierTrainReport rep;
    rep.train_images = (int64_t)train_rows.size();
    rep.heldout_images = (int64_t)held_rows.size();

    EmojiClassifier net(C);
    init_random(net, mix_seed(o.seed, 21));
    ParamGrads params(net);
    AdamWOptions ao;
    ao.lr = o.lr;
    ao.weight_decay = o.weight_decay;
    AdamW opt(params, ao);

    const SubsetDataset train_set(data, train_rows);
    LoaderOptions lo;
    lo.batch_size = (int)std::min<int64_t>(o.batch, rep.train_images);
    lo.drop_last = true;
    DataLoader loader(train_set, o.seed, lo);
    const int64_t total = o.epochs * loader.batches_per_epoch();
    std::deque<double> recent;
    std::vector<double> losses;
    for (int64_t step = 0; step < total; ++step) {
        const Batch b = loader.next();
        std::vector<int64_t> targets;
        for (int64_t i : b.indices) targets.push_back(labels.category[(size_t)train_rows[(size_t)i]]);
        opt.set_lr(lr_warmup_cosine(step, std::min<int64_t>(o.warmup, total / 5), total, o.lr));
        double loss_v = 0;
        {
            ParamGrads::Bind bind(params);
            const Var loss = cross_entropy(net.forward(Var(b.images)), targets);
            backward(loss);
            loss_v = loss.item();
        }
        NUANCE_CHECK(std::isfinite(loss_v), "train-classifier: the loss became ", loss_v, " at step ", step + 1);
        clip_grad_norm(params, 1.0);
        opt.step();
        params.zero_grad();
        losses.push_back(loss_v);
        recent.push_back(loss_v);
        if (recent.size() > 50) recent.pop_front();
        if (on_step) {
            ClassifierTrainProgress p;
            p.step = step + 1;
            p.total = total;
            p.epoch = (int)b.epoch + 1;
            p.loss = loss_v;
            for (double l : recent) p.loss_avg += l / (double)recent.size();
            p.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            on_step(p);
        }
    }
    rep.steps = total;
    const size_t k = std::max<size_t>(1, std::min<size_t>(20, losses.size() / 4));
    for (size_t i = 0; i < k; ++i) {
        rep.first_loss += losses[i] / (double)k;
        rep.last_loss += losses[losses.size() - k + i] / (double)k;
    }

    rep.train_accuracy = class_accuracy(classify(net, dataset_images(data, train_rows)).logits,
                                        pick(labels.category, train_rows)).accuracy;
    if (!held_rows.empty()) {
        const ClassAccuracy h =
            class_accuracy(classify(net, dataset_images(data, held_rows)).logits, pick(labels.category, held_rows));
        rep.heldout_accuracy = h.accuracy;
        rep.heldout_balanced_accuracy = h.balanced_accuracy;
    }
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o.output.empty()) {
        save_emoji_classifier(o.output, net, classes,
                              {{"train_accuracy", str(rep.train_accuracy)},
                               {"heldout_accuracy", str(rep.heldout_accuracy)},
                               {"heldout_balanced_accuracy", str(rep.heldout_balanced_accuracy)},
                               {"heldout_rule", "concept_id % 10 == 0"},
                               {"train_images", str(rep.train_images)},
                               {"heldout_images", str(rep.heldout_images)},
                               {"epochs", str(o.epochs)},
                               {"seed", str(o.seed)},
                               {"resolution", str(kSide)}});
    }
    return rep;
}

// ---- files ----

void save_emoji_classifier(const std::string& path, EmojiClassifier& net, const std::vector<std::string>& classes,
                           const std::map<std::string, std::string>& metadata) {
    NUANCE_CHECK((int64_t)classes.size() == net.num_classes(), "save_emoji_classifier: ", classes.size(),
                 " class names for a classifier of ", net.num_classes(), " classes");
    std::map<std::string, std::string> meta = metadata;
    meta["format"] = kFormat;
    meta["classes"] = nlohmann::json(classes).dump();
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
    save_safetensors(path, state_dict(net), meta);
}

LoadedClassifier load_emoji_classifier(const std::string& path, const std::vector<std::string>& expected_classes) {
    std::error_code ec;
    NUANCE_CHECK_CODE(fs::is_regular_file(path, ec), NotFound, "classifier file '", path,
                      "' not found (make one with `nuance train-classifier --data data/emoji -o ", path, "`)");
    WeightFile wf = load_safetensors(path);
    const auto fmt = wf.metadata.find("format");
    NUANCE_CHECK(fmt != wf.metadata.end() && fmt->second == kFormat, "'", path, "' is not an emoji classifier (its ",
                 "metadata 'format' is '", fmt == wf.metadata.end() ? std::string("<none>") : fmt->second,
                 "', expected '", kFormat, "')");
    LoadedClassifier out;
    try {
        const auto it = wf.metadata.find("classes");
        NUANCE_CHECK(it != wf.metadata.end(), "no 'classes' entry");
        const nlohmann::json j = parse_json_text(it->second, "classes");
        NUANCE_CHECK(j.is_array(), "'classes' is not a list");
        for (const auto& c : j) {
            NUANCE_CHECK(c.is_string(), "'classes' holds a non-string");
            out.classes.push_back(c.get<std::string>());
        }
    } catch (const std::exception& e) {
        fail(ErrorCode::InvalidArgument, "classifier '", path, "': bad metadata: ", e.what());
    }
    const auto head = wf.tensors.find("head.weight");
    NUANCE_CHECK(head != wf.tensors.end() && head->second.dim() == 2, "classifier '", path,
                 "' has no [classes, 128] tensor 'head.weight'");
    const int64_t C = head->second.size(0);
    NUANCE_CHECK(C == (int64_t)out.classes.size(), "classifier '", path, "': head.weight has ", C,
                 " rows but the metadata names ", out.classes.size(), " classes");
    if (!expected_classes.empty()) {
        NUANCE_CHECK(C == (int64_t)expected_classes.size(), "classifier '", path, "' has ", C, " classes, expected ",
                     expected_classes.size(), " (the emoji categories: ", nlohmann::json(expected_classes).dump(),
                     ")");
        NUANCE_CHECK(out.classes == expected_classes, "classifier '", path, "' has the classes ",
                     nlohmann::json(out.classes).dump(), ", expected ", nlohmann::json(expected_classes).dump());
    }
    out.net = std::make_unique<EmojiClassifier>(C);
    LoadOptions lo;
    lo.source = path;
    const std::vector<std::string> unused = load_module(*out.net, wf.tensors, lo);
    NUANCE_CHECK(unused.empty(), "classifier '", path, "' holds tensors the network does not have: ",
                 nlohmann::json(unused).dump());
    out.metadata = std::move(wf.metadata);
    return out;
}

}  // namespace nuance
