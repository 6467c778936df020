// Shape letters: N images, D feature width, K classes.
#include "eval/feature_extractor.h"

#include <time.h>

#include <chrono>
#include <cstring>

#include "core/error.h"
#include "dist/comm.h"
#include "eval/inception/inception.h"
#include "eval/inception/resize.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double process_cpu_seconds() {
    timespec ts{};
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

class InceptionExtractor final : public FeatureExtractor {
public:
    InceptionExtractor(InceptionV3 net, InceptionResize resize) : net_(std::move(net)), resize_(resize) {}
    std::string name() const override { return str("inception (", inception_resize_name(resize_), " resize)"); }
    int64_t dim() const override { return 2048; }
    int64_t num_logits() const override { return net_.has_fc() ? net_.num_classes() : 0; }
    Output extract(const std::vector<Image>& images, bool want_logits) const override {
        NUANCE_CHECK(!want_logits || net_.has_fc(), "the Inception Score needs the fc head (fc.weight, fc.bias), ",
                     "which these Inception weights lack (pytorch-fid's pt_inception-2015-12-05 .pth has it)");
        InceptionFeatures f = net_.forward(inception_input(images, resize_), false, want_logits);
        return {f.pool3, want_logits ? f.logits_unbiased : Tensor()};
    }

private:
    InceptionV3 net_;
    InceptionResize resize_;
};

class EmojiClassifierExtractor final : public FeatureExtractor {
public:
    explicit EmojiClassifierExtractor(LoadedClassifier c) : c_(std::move(c)) {}
    std::string name() const override { return "emoji-classifier"; }
    int64_t dim() const override { return EmojiClassifier::kFeatures; }
    int64_t num_logits() const override { return c_.net->num_classes(); }
    Output extract(const std::vector<Image>& images, bool want_logits) const override {
        EmojiClassifier::Output o = classify(*c_.net, emoji_images_to_batch(images));
        return {o.features, want_logits ? o.logits : Tensor()};
    }

private:
    LoadedClassifier c_;
};

// Images <-> bytes for the gather: per image int32 width, height, channels, then the pixels.
void put_i32(std::vector<uint8_t>& b, int32_t v) {
    const size_t at = b.size();
    b.resize(at + 4);
    std::memcpy(b.data() + at, &v, 4);
}

}  // namespace

std::unique_ptr<FeatureExtractor> make_inception_extractor(const std::string& weights, const std::string& resize,
                                                           Precision precision) {
    const InceptionResize mode = parse_inception_resize(resize);
    InceptionV3 net = InceptionV3::load(weights);
    if (precision == Precision::BF16) net.set_compute(Precision::BF16);
    return std::make_unique<InceptionExtractor>(std::move(net), mode);
}

std::unique_ptr<FeatureExtractor> make_inception_extractor(InceptionV3 net, InceptionResize resize) {
    return std::make_unique<InceptionExtractor>(std::move(net), resize);
}

std::unique_ptr<FeatureExtractor> make_emoji_classifier_extractor(const std::string& weights) {
    return make_emoji_classifier_extractor(load_emoji_classifier(weights, emoji_categories()));
}

std::unique_ptr<FeatureExtractor> make_emoji_classifier_extractor(LoadedClassifier classifier) {
    NUANCE_CHECK(classifier.net, "emoji classifier: no network loaded");
    return std::make_unique<EmojiClassifierExtractor>(std::move(classifier));
}

std::unique_ptr<FeatureExtractor> make_feature_extractor(const std::string& spec, const std::string& inception_weights,
                                                         const std::string& resize, Precision precision) {
    if (spec.empty() || spec == "inception") {
        NUANCE_CHECK(!inception_weights.empty(), "usage: --inception FILE is required (pytorch-fid's ",
                     "pt_inception-2015-12-05-6726825d.pth or the same weights as .safetensors), or choose another ",
                     "network with --features emoji-classifier:FILE");
        return make_inception_extractor(inception_weights, resize, precision);
    }
    const std::string kEmoji = "emoji-classifier:";
    if (spec.rfind(kEmoji, 0) == 0) {
        const std::string file = spec.substr(kEmoji.size());
        NUANCE_CHECK(!file.empty(), "usage: --features emoji-classifier:FILE needs the classifier's file after the ':'");
        NUANCE_CHECK(inception_weights.empty(), "usage: --inception and --features ", spec,
                     " name two feature networks; give one");
        return make_emoji_classifier_extractor(file);
    }
    fail(ErrorCode::InvalidArgument, "usage: --features '", spec,
         "' is not a feature network (inception | emoji-classifier:FILE)");
}

ShardRange my_shard(int64_t n) {
    const dist::Range r = dist::shard(n, dist::size(), dist::rank());
    return {r.begin, r.end};
}

void agree_on_errors(const std::exception_ptr& mine, const std::string& what) {
    if (dist::size() == 1) {
        if (mine) std::rethrow_exception(mine);
        return;
    }
    const std::vector<uint64_t> failed = dist::allgather(mine ? 1u : 0u);
    if (mine) std::rethrow_exception(mine);
    for (size_t r = 0; r < failed.size(); ++r)
        if (failed[r])
            fail(ErrorCode::Internal, what, ": rank ", r, " failed (its error is printed above); every rank stops");
}

std::vector<double> gather_doubles(const std::vector<double>& mine) {
    const std::vector<uint8_t> b = dist::gather_bytes(mine.data(), mine.size() * sizeof(double), 0);
    std::vector<double> out(b.size() / sizeof(double));
    if (!b.empty()) std::memcpy(out.data(), b.data(), out.size() * sizeof(double));
    return out;
}

std::vector<Image> gather_images(const std::vector<Image>& mine) {
    if (dist::size() == 1) return mine;
    std::vector<uint8_t> b;
    for (const Image& im : mine) {
        put_i32(b, im.width);
        put_i32(b, im.height);
        put_i32(b, im.channels);
        b.insert(b.end(), im.pixels.begin(), im.pixels.end());
    }
    const std::vector<uint8_t> all = dist::gather_bytes(b.data(), b.size(), 0);
    std::vector<Image> out;
    size_t at = 0;
    while (at < all.size()) {
        NUANCE_CHECK(all.size() - at >= 12, "gather_images: truncated header at byte ", at);
        int32_t v[3];
        std::memcpy(v, all.data() + at, 12);
        at += 12;
        Image im;
        im.width = v[0];
        im.height = v[1];
        im.channels = v[2];
        NUANCE_CHECK(im.width >= 0 && im.height >= 0 && (im.channels == 3 || im.channels == 4) &&
                         (uint64_t)im.width * (uint64_t)im.height <= kMaxEvalImagePixels,
                     "gather_images: bad image header ", im.width, "x", im.height, "x", im.channels);
        const size_t n = (size_t)im.width * (size_t)im.height * (size_t)im.channels;
        NUANCE_CHECK(all.size() - at >= n, "gather_images: truncated pixels at byte ", at);
        im.pixels.assign(all.begin() + (ptrdiff_t)at, all.begin() + (ptrdiff_t)(at + n));
        at += n;
        out.push_back(std::move(im));
    }
    return out;
}

namespace {

// Rank 0: every rank's rows [n_r, width] of F32 concatenated in rank order as [N, width]; elsewhere undefined.
Tensor gather_rows(const Tensor& mine, int64_t width, int64_t total) {
    const Tensor c = mine.defined() ? mine.contiguous() : Tensor();
    const size_t bytes = c.defined() ? (size_t)c.numel() * sizeof(float) : 0;
    const std::vector<uint8_t> all = dist::gather_bytes(bytes ? c.raw() : nullptr, bytes, 0);
    if (!dist::is_root()) return Tensor();
    NUANCE_CHECK(all.size() == (size_t)total * (size_t)width * sizeof(float), "gather: got ", all.size(),
                 " bytes for ", total, " rows of ", width);
    Tensor out = Tensor::empty({total, width});
    if (!all.empty()) std::memcpy(out.data<float>(), all.data(), all.size());
    return out;
}

}  // namespace

void for_each_batch(const ImageSource& src, int64_t batch, const BatchFn& fn, const std::string& what) {
    NUANCE_CHECK(batch >= 1 && batch <= 256, "usage: --batch must be 1..256, got ", batch);
    const ShardRange mine = my_shard(src.size());
    std::exception_ptr error;
    try {
        for (int64_t start = mine.begin; start < mine.end; start += batch) {
            const int64_t b = std::min(batch, mine.end - start);
            std::vector<Image> ims;
            for (int64_t i = 0; i < b; ++i) ims.push_back(src.get(start + i));
            fn(ims, start);
        }
    } catch (...) {
        error = std::current_exception();
    }
    agree_on_errors(error, what);
}

FeatureRun extract_features(const FeatureExtractor& net, const ImageSource& src, int64_t batch, bool want_logits,
                            int keep, const std::function<void(const FeatureProgress&)>& on_progress,
                            const BatchFn& also) {
    NUANCE_CHECK(keep >= 0, "extract_features: keep ", keep, " < 0");
    const int64_t k = want_logits ? net.num_logits() : 0;
    NUANCE_CHECK(!want_logits || k > 0, "feature network ", net.name(), " has no classifier head (logits)");
    const auto t0 = Clock::now();
    const int64_t n = src.size(), d = net.dim();
    const ShardRange mine = my_shard(n);
    const int64_t local = mine.end - mine.begin;
    FeatureRun r;
    r.ranks = dist::size();
    Tensor feats = Tensor::empty({local, d}), logits;
    if (want_logits) logits = Tensor::empty({local, k});
    std::vector<Image> kept;
    for_each_batch(src, batch, [&](const std::vector<Image>& ims, int64_t start) {
        const int64_t b = (int64_t)ims.size();
        for (int64_t i = 0; i < b && start + i < keep; ++i) kept.push_back(ims[(size_t)i]);
        const auto n0 = Clock::now();
        const double c0 = process_cpu_seconds();
        const FeatureExtractor::Output o = net.extract(ims, want_logits);
        const double dt = since(n0), dc = process_cpu_seconds() - c0;
        r.network_seconds += dt;
        r.network_cpu_seconds += dc;
        if (start == mine.begin) {
            r.first_batch_seconds = dt;
            r.first_batch_cpu_seconds = dc;
        }
        NUANCE_CHECK(o.features.defined() && o.features.shape() == Shape({b, d}), "feature network ", net.name(),
                     " returned ", o.features.defined() ? shape_str(o.features.shape()) : "nothing", " for ", b,
                     " images, expected [", b, ", ", d, "]");
        const int64_t row = start - mine.begin;
        std::memcpy(feats.data<float>() + row * d, o.features.contiguous().data<float>(),
                    (size_t)(b * d) * sizeof(float));
        if (want_logits)
            std::memcpy(logits.data<float>() + row * k, o.logits.contiguous().data<float>(),
                        (size_t)(b * k) * sizeof(float));
        if (also) also(ims, start);
        if (on_progress) on_progress({start + b - mine.begin, local, since(t0)});
    }, "feature extraction");
    if (r.ranks == 1) {
        r.features = feats;
        r.logits = logits;
        r.kept = std::move(kept);
    } else {
        r.features = gather_rows(feats, d, n);
        if (want_logits) r.logits = gather_rows(logits, k, n);
        r.kept = gather_images(kept);
        r.complete = dist::is_root();
    }
    r.seconds = since(t0);
    return r;
}

}  // namespace nuance
