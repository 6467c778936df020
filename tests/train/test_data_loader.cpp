// DataLoader: epoch permutations, determinism from the seed, bit-exact resume from a saved state, prefetch
// equivalence, errors through the prefetch thread.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "../test_util.h"
#include "data_test_util.h"
#include "train/data_loader.h"

namespace nuance {
namespace {

using test::error_of;
using ::testing::HasSubstr;

// Sample i: a [1, 1, 2] image (i, first rng draw scaled) and caption "i:<second draw>": the rng of each sample
// shows up in the batch, so equal batches mean equal per-sample rngs too.
class CountingDataset final : public Dataset {
public:
    CountingDataset(int64_t n, int64_t bad = -1, int64_t odd_shape = -1) : n_(n), bad_(bad), odd_(odd_shape) {}
    int64_t size() const override { return n_; }
    Sample get(int64_t i, Mt19937& rng) const override {
        NUANCE_CHECK(i != bad_, "sample ", i, " is broken");
        Sample s;
        s.image = Tensor::from_vector({(float)i, (float)(rng() % 1000)}, i == odd_ ? Shape{1, 2, 1} : Shape{1, 1, 2});
        s.caption = std::to_string(i) + ":" + std::to_string(rng());
        return s;
    }
    std::string describe(int64_t i) const override { return "item " + std::to_string(i); }

private:
    int64_t n_, bad_, odd_;
};

std::vector<int64_t> ids(const Batch& b) {
    std::vector<int64_t> v;
    for (float f : b.images.to_vector()) v.push_back((int64_t)f);
    std::vector<int64_t> out;
    for (size_t i = 0; i < v.size(); i += 2) out.push_back(v[i]);
    return out;
}

void expect_same(const Batch& a, const Batch& b) {
    EXPECT_EQ(a.images.shape(), b.images.shape());
    EXPECT_EQ(a.images.to_vector(), b.images.to_vector());
    EXPECT_EQ(a.captions, b.captions);
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(a.epoch, b.epoch);
}

TEST(DataLoader, EachEpochVisitsEverySampleOnceInAShuffledOrder) {
    CountingDataset ds(10);
    LoaderOptions o;
    o.batch_size = 3;
    o.drop_last = false;
    DataLoader dl(ds, 7, o);
    EXPECT_EQ(dl.batches_per_epoch(), 4);
    std::vector<std::vector<int64_t>> epochs(2);
    for (int k = 0; k < 8; ++k) {
        Batch b = dl.next();
        ASSERT_EQ(b.images.shape(), (Shape{k % 4 == 3 ? 1 : 3, 1, 1, 2}));
        EXPECT_EQ(b.epoch, k / 4);
        EXPECT_EQ(ids(b), b.indices);
        ASSERT_EQ(b.captions.size(), b.indices.size());
        for (size_t j = 0; j < b.indices.size(); ++j)
            EXPECT_EQ(b.captions[j].substr(0, b.captions[j].find(':')), std::to_string(b.indices[j]));
        epochs[(size_t)b.epoch].insert(epochs[(size_t)b.epoch].end(), b.indices.begin(), b.indices.end());
    }
    for (auto& e : epochs) {
        EXPECT_EQ(e, dl.epoch_order(&e - &epochs[0]));
        std::vector<int64_t> sorted = e;
        std::sort(sorted.begin(), sorted.end());
        EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    }
    EXPECT_NE(epochs[0], epochs[1]);
    std::vector<int64_t> identity = epochs[0];
    std::sort(identity.begin(), identity.end());
    EXPECT_NE(epochs[0], identity);
    EXPECT_EQ(dl.state(), (LoaderState{7, 1, 10}));
}

TEST(DataLoader, DropLastAndNoShuffle) {
    CountingDataset ds(10);
    LoaderOptions o;
    o.batch_size = 4;
    o.shuffle = false;
    DataLoader dl(ds, 1, o);
    EXPECT_EQ(dl.batches_per_epoch(), 2);
    EXPECT_EQ(dl.next().indices, (std::vector<int64_t>{0, 1, 2, 3}));
    EXPECT_EQ(dl.next().indices, (std::vector<int64_t>{4, 5, 6, 7}));
    Batch b = dl.next();  // 8, 9 dropped
    EXPECT_EQ(b.indices, (std::vector<int64_t>{0, 1, 2, 3}));
    EXPECT_EQ(b.epoch, 1);
}

TEST(DataLoader, SameSeedSameBatchesOtherSeedOtherOrder) {
    CountingDataset ds(50);
    LoaderOptions o;
    o.batch_size = 8;
    DataLoader a(ds, 42, o), b(ds, 42, o), c(ds, 43, o);
    bool differs = false;
    for (int k = 0; k < 12; ++k) {
        Batch x = a.next(), y = b.next(), z = c.next();
        expect_same(x, y);
        differs |= x.indices != z.indices;
    }
    EXPECT_TRUE(differs);
}

TEST(DataLoader, PrefetchGivesTheSameBatchesAsSynchronousLoading) {
    CountingDataset ds(23);
    LoaderOptions o;
    o.batch_size = 5;
    o.drop_last = false;
    DataLoader pre(ds, 9, o);
    o.prefetch = false;
    DataLoader sync(ds, 9, o);
    for (int k = 0; k < 15; ++k) expect_same(pre.next(), sync.next());
    EXPECT_EQ(pre.state(), sync.state());
}

TEST(DataLoader, ResumeFromSavedStateIsBitExact) {
    CountingDataset ds(17);
    LoaderOptions o;
    o.batch_size = 4;
    DataLoader run(ds, 123, o);
    std::vector<Batch> all;
    LoaderState saved;
    for (int k = 0; k < 11; ++k) {
        all.push_back(run.next());
        if (k == 5) saved = run.state();  // crosses an epoch boundary afterwards (4 batches per epoch)
    }
    // A fresh process: new loader, state restored from the checkpoint.
    DataLoader resumed(ds, 0, o);
    resumed.set_state(saved);
    for (int k = 6; k < 11; ++k) expect_same(resumed.next(), all[(size_t)k]);
    EXPECT_EQ(resumed.state(), run.state());
    // Rewinding the same loader (a prefetched batch for the old position is in flight) works as well.
    run.set_state(saved);
    for (int k = 6; k < 11; ++k) expect_same(run.next(), all[(size_t)k]);
    run.set_state(LoaderState{123, 0, 0});
    expect_same(run.next(), all[0]);
}

TEST(DataLoader, RealImagesBatchToBCHW) {
    test::TempDir d("loader_images");
    for (int i = 0; i < 5; ++i) {
        test::write_image(d / ("im" + std::to_string(i) + ".png"), test::gradient_image(6 + i, 5, i * 40));
        test::write_text(d / ("im" + std::to_string(i) + ".txt"), "picture " + std::to_string(i));
    }
    DatasetOptions opt;
    opt.resolution = 4;
    opt.random_flip = true;
    ImageCaptionDataset ds(d.path().string(), opt);
    LoaderOptions o;
    o.batch_size = 2;
    DataLoader dl(ds, 5, o);
    Batch b = dl.next();
    EXPECT_EQ(b.images.shape(), (Shape{2, 3, 4, 4}));
    for (float v : b.images.to_vector()) ASSERT_TRUE(v >= -1.0f && v <= 1.0f);
    EXPECT_EQ(b.captions[0], "picture " + std::to_string(b.indices[0]));
}

// Weighted epochs: every row drawn floor or ceil of n * w_i / sum(w) times (systematic sampling), zero weights never,
// the same order for the same (seed, epoch), other offsets in other epochs, and a resumed loader continues exactly.
TEST(DataLoader, WeightedEpochsDrawEachRowItsShare) {
    const int64_t n = 97;  // prime: no weight divides the epoch evenly
    CountingDataset ds(n);
    LoaderOptions o;
    o.batch_size = 5;
    o.drop_last = false;
    for (int64_t i = 0; i < n; ++i) o.weights.push_back(i % 7 == 3 ? 0.0 : 1.0 + (double)(i % 5) * 0.37);
    double sum = 0;
    for (double w : o.weights) sum += w;
    DataLoader dl(ds, 11, o);
    std::vector<std::vector<int64_t>> orders;
    for (int64_t e = 0; e < 20; ++e) {
        const std::vector<int64_t> ord = dl.epoch_order(e);
        ASSERT_EQ((int64_t)ord.size(), n);
        std::vector<int64_t> count((size_t)n, 0);
        for (int64_t i : ord) {
            ASSERT_GE(i, 0);
            ASSERT_LT(i, n);
            ++count[(size_t)i];
        }
        for (int64_t i = 0; i < n; ++i) {
            const double expect = (double)n * o.weights[(size_t)i] / sum;
            EXPECT_GE(count[(size_t)i], (int64_t)std::floor(expect)) << "row " << i << " epoch " << e;
            EXPECT_LE(count[(size_t)i], (int64_t)std::ceil(expect)) << "row " << i << " epoch " << e;
            if (o.weights[(size_t)i] == 0) EXPECT_EQ(count[(size_t)i], 0);
        }
        EXPECT_FALSE(std::is_sorted(ord.begin(), ord.end()));  // shuffled
        EXPECT_EQ(ord, dl.epoch_order(e));
        orders.push_back(ord);
    }
    EXPECT_NE(orders[0], orders[1]);
    // Over 20 epochs the shares average out: row i's total is within 1 draw per epoch... and much closer on average.
    std::vector<int64_t> total((size_t)n, 0);
    for (const auto& ord : orders)
        for (int64_t i : ord) ++total[(size_t)i];
    for (int64_t i = 0; i < n; ++i)
        EXPECT_NEAR((double)total[(size_t)i], 20.0 * (double)n * o.weights[(size_t)i] / sum, 5.0) << "row " << i;
    // The loader's batches follow the weighted order, and a resumed loader continues bit-exactly.
    DataLoader a(ds, 11, o);
    std::vector<int64_t> seen;
    for (int k = 0; k < 20; ++k) {  // the whole first epoch (20 batches of <= 5)
        const Batch b = a.next();
        seen.insert(seen.end(), b.indices.begin(), b.indices.end());
    }
    EXPECT_EQ(seen, orders[0]);
    for (int k = 0; k < 7; ++k) a.next();
    DataLoader r(ds, 11, o);
    r.set_state(a.state());
    for (int k = 0; k < 30; ++k) expect_same(a.next(), r.next());
    // Without shuffle the drawn rows come in row order.
    o.shuffle = false;
    DataLoader un(ds, 11, o);
    const std::vector<int64_t> ord = un.epoch_order(0);
    EXPECT_TRUE(std::is_sorted(ord.begin(), ord.end()));
    // Uniform weights are every row once (whatever the offset).
    o.shuffle = true;
    o.weights.assign((size_t)n, 2.5);
    DataLoader uni(ds, 3, o);
    for (int64_t e = 0; e < 5; ++e) {
        std::vector<int64_t> u = uni.epoch_order(e);
        std::sort(u.begin(), u.end());
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(u[(size_t)i], i);
    }
    // One row with all the weight takes the whole epoch.
    o.weights.assign((size_t)n, 0.0);
    o.weights[42] = 1e-300;
    DataLoader one(ds, 3, o);
    for (int64_t i : one.epoch_order(0)) EXPECT_EQ(i, 42);
}

TEST(DataLoaderErrors, DatasetErrorsSurfaceInNextAndNameTheSample) {
    CountingDataset ds(6, /*bad=*/3);
    LoaderOptions o;
    o.batch_size = 6;
    o.shuffle = false;
    DataLoader dl(ds, 0, o);
    EXPECT_THAT(error_of([&] { dl.next(); }), HasSubstr("sample 3 is broken"));
    EXPECT_EQ(dl.state(), (LoaderState{0, 0, 0}));  // not advanced

    test::TempDir d("loader_corrupt");
    test::write_text(d / "broken.png", "not a png at all");
    test::write_text(d / "broken.txt", "x");
    ImageCaptionDataset img(d.path().string());
    o.batch_size = 1;
    DataLoader dl2(img, 0, o);
    EXPECT_THAT(error_of([&] { dl2.next(); }), HasSubstr("broken.png"));

    CountingDataset mixed(4, -1, /*odd_shape=*/2);
    o.batch_size = 4;
    DataLoader dl3(mixed, 0, o);
    const std::string e = error_of([&] { dl3.next(); });
    EXPECT_THAT(e, HasSubstr("item 2 is [1, 2, 1]"));
    EXPECT_THAT(e, HasSubstr("item 0 in the same batch is [1, 1, 2]"));
}

TEST(DataLoaderErrors, BadOptionsAndStates) {
    CountingDataset ds(3);
    LoaderOptions o;
    o.batch_size = 4;
    EXPECT_THAT(error_of([&] { DataLoader dl(ds, 0, o); }), HasSubstr("batch size 4 is larger than the data set (3"));
    o.batch_size = 0;
    EXPECT_THAT(error_of([&] { DataLoader dl(ds, 0, o); }), HasSubstr("batch size must be >= 1"));
    o.batch_size = 1;
    DataLoader dl(ds, 0, o);
    EXPECT_THAT(error_of([&] { dl.set_state({0, 0, 4}); }), HasSubstr("invalid state (epoch 0, position 4)"));
    EXPECT_THAT(error_of([&] { dl.set_state({0, -1, 0}); }), HasSubstr("invalid state"));
    CountingDataset empty(0);
    EXPECT_THAT(error_of([&] { DataLoader e(empty, 0, o); }), HasSubstr("the data set is empty"));
    o.weights = {1, 1};
    EXPECT_THAT(error_of([&] { DataLoader w(ds, 0, o); }), HasSubstr("2 sampling weights for a data set of 3"));
    o.weights = {1, -1, 1};
    EXPECT_THAT(error_of([&] { DataLoader w(ds, 0, o); }), HasSubstr("sampling weight 1 is -1"));
    o.weights = {1, std::nan(""), 1};
    EXPECT_THAT(error_of([&] { DataLoader w(ds, 0, o); }), HasSubstr("sampling weight 1 is nan"));
    o.weights = {0, 0, 0};
    EXPECT_THAT(error_of([&] { DataLoader w(ds, 0, o); }), HasSubstr("the sampling weights sum to 0"));
    o.weights = {1e308, 1e308, 1};
    EXPECT_THAT(error_of([&] { DataLoader w(ds, 0, o); }), HasSubstr("the sampling weights sum to inf"));
}

}  // namespace
}  // namespace nuance
