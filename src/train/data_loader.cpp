// DataLoader (see data_loader.h).
#include "train/data_loader.h"

#include <cmath>
#include <cstring>

namespace nuance {

namespace {

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

constexpr uint64_t kOrderTag = 0x6f72646572ull;   // "order": epoch permutations
constexpr uint64_t kSampleTag = 0x73616d706c65ull;  // "sample": per-sample augmentation

}  // namespace

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) { return splitmix64(splitmix64(splitmix64(a) ^ b) ^ c); }

DataLoader::DataLoader(const Dataset& dataset, uint64_t seed, const LoaderOptions& options)
    : dataset_(dataset), options_(options) {
    state_.seed = seed;
    NUANCE_CHECK(options.batch_size >= 1, "data loader: batch size must be >= 1, got ", options.batch_size);
    NUANCE_CHECK(dataset.size() >= 1, "data loader: the data set is empty");
    NUANCE_CHECK(!options.drop_last || options.batch_size <= dataset.size(), "data loader: batch size ",
                 options.batch_size, " is larger than the data set (", dataset.size(),
                 " samples) and drop_last is set: no batch would ever be complete");
    if (!options.weights.empty()) {
        NUANCE_CHECK(options.weights.size() == (size_t)dataset.size(), "data loader: ", options.weights.size(),
                     " sampling weights for a data set of ", dataset.size(), " samples");
        double sum = 0;
        for (size_t i = 0; i < options.weights.size(); ++i) {
            const double w = options.weights[i];
            NUANCE_CHECK(std::isfinite(w) && w >= 0, "data loader: sampling weight ", i, " is ", w,
                         " (expected a finite value >= 0)");
            sum += w;
        }
        NUANCE_CHECK(sum > 0 && std::isfinite(sum), "data loader: the sampling weights sum to ", sum);
    }
}

DataLoader::~DataLoader() {
    {
        std::lock_guard<std::mutex> lk(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

int64_t DataLoader::batches_per_epoch() const {
    const int64_t n = dataset_.size(), b = options_.batch_size;
    return options_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const { return compute_order(state_.seed, epoch); }

std::vector<int64_t> DataLoader::compute_order(uint64_t seed, int64_t epoch) const {
    const int64_t n = dataset_.size();
    std::vector<int64_t> order((size_t)n);
    for (int64_t i = 0; i < n; ++i) order[(size_t)i] = i;
    if (!options_.shuffle && options_.weights.empty()) return order;
    NUANCE_CHECK(n <= (int64_t)UINT32_MAX, "data loader: ", n, " samples is more than the shuffle supports");
    Mt19937 rng(mix_seed(seed ^ kOrderTag, (uint64_t)epoch));
    if (!options_.weights.empty()) {
        // Systematic sampling: the rows' weights laid end to end on [0, n), one draw at u + k for k = 0..n-1
        // (u uniform in [0, 1), 53 bits): row i is drawn floor or ceil of its expected count n * w_i / sum(w).
        const std::vector<double>& w = options_.weights;
        double sum = 0;
        for (double x : w) sum += x;
        const uint64_t hi = rng(), lo = rng();
        const double u = (double)(((hi << 32) | lo) >> 11) * 0x1.0p-53;
        double end = 0;  // where row i's interval ends
        int64_t k = 0, last = 0;  // last: the last row with a positive weight
        for (int64_t i = 0; i < n && k < n; ++i) {
            if (w[(size_t)i] <= 0) continue;
            last = i;
            end += (double)n * (w[(size_t)i] / sum);
            while (k < n && u + (double)k < end) order[(size_t)k++] = i;
        }
        for (; k < n; ++k) order[(size_t)k] = last;  // the sum's rounding left the last draw(s) just past the end
        if (!options_.shuffle) return order;
    }
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[(size_t)i], order[uniform_below(rng, (uint32_t)(i + 1))]);
    return order;
}

LoaderState DataLoader::normalize(LoaderState s) const {
    const int64_t remaining = dataset_.size() - s.position;
    if (remaining <= 0 || (options_.drop_last && remaining < options_.batch_size)) {
        ++s.epoch;
        s.position = 0;
    }
    return s;
}

LoaderState DataLoader::advance(const LoaderState& s) const {
    LoaderState t = normalize(s);
    t.position += std::min<int64_t>(options_.batch_size, dataset_.size() - t.position);
    return t;
}

void DataLoader::set_state(const LoaderState& state) {
    NUANCE_CHECK(state.epoch >= 0 && state.position >= 0 && state.position <= dataset_.size(),
                 "data loader: invalid state (epoch ", state.epoch, ", position ", state.position, ") for a data set of ",
                 dataset_.size(), " samples");
    state_ = state;
}

Batch DataLoader::make_batch(const LoaderState& s) const {
    std::vector<int64_t> idx;
    {
        std::lock_guard<std::mutex> lk(order_mutex_);
        if (order_epoch_ != s.epoch || order_seed_ != s.seed) {
            order_ = compute_order(s.seed, s.epoch);
            order_epoch_ = s.epoch;
            order_seed_ = s.seed;
        }
        const int64_t count = std::min<int64_t>(options_.batch_size, dataset_.size() - s.position);
        NUANCE_ASSERT(count >= 1, "empty batch");
        idx.assign(order_.begin() + s.position, order_.begin() + s.position + count);
    }
    Batch b;
    b.epoch = s.epoch;
    b.indices = idx;
    const int64_t B = (int64_t)idx.size();
    Shape first;
    float* out = nullptr;
    size_t per = 0;
    for (int64_t k = 0; k < B; ++k) {
        Mt19937 rng(mix_seed(s.seed ^ kSampleTag, (uint64_t)s.epoch, (uint64_t)(s.position + k)));
        Sample smp = dataset_.get(idx[(size_t)k], rng);
        NUANCE_CHECK(smp.image.defined() && smp.image.dim() == 3, dataset_.describe(idx[(size_t)k]),
                     ": expected a [C, H, W] image, got ", smp.image.defined() ? smp.image.str() : "none");
        if (k == 0) {
            first = smp.image.shape();
            b.images = Tensor::empty({B, first[0], first[1], first[2]});
            out = b.images.data<float>();
            per = (size_t)shape_numel(first);
        }
        NUANCE_CHECK(smp.image.shape() == first, dataset_.describe(idx[(size_t)k]), " is ", shape_str(smp.image.shape()),
                     " but ", dataset_.describe(idx[0]), " in the same batch is ", shape_str(first),
                     ": set a resolution so that every image is resized and cropped to one size");
        const Tensor img = smp.image.f32().contiguous();
        std::memcpy(out + (size_t)k * per, img.data<float>(), per * sizeof(float));
        b.captions.push_back(std::move(smp.caption));
    }
    return b;
}

void DataLoader::worker_loop() {
    std::unique_lock<std::mutex> lk(mutex_);
    for (;;) {
        cv_.wait(lk, [&] { return stop_ || pending_.has_value(); });
        if (stop_) return;
        const LoaderState s = *pending_;
        pending_.reset();
        busy_key_ = s;
        lk.unlock();
        Batch b;
        std::exception_ptr err;
        try {
            b = make_batch(s);
        } catch (...) {
            err = std::current_exception();
        }
        lk.lock();
        done_ = std::move(b);
        done_error_ = err;
        done_key_ = s;
        busy_key_.reset();
        cv_.notify_all();
    }
}

void DataLoader::request(const LoaderState& s) {
    {
        std::lock_guard<std::mutex> lk(mutex_);
        if ((done_key_ && *done_key_ == s) || (busy_key_ && *busy_key_ == s) || (pending_ && *pending_ == s)) return;
        pending_ = s;
        if (!worker_.joinable()) worker_ = std::thread([this] { worker_loop(); });
    }
    cv_.notify_all();
}

Batch DataLoader::next() {
    const LoaderState s = normalize(state_);
    Batch b;
    if (!options_.prefetch) {
        b = make_batch(s);
    } else {
        request(s);
        std::exception_ptr err;
        {
            std::unique_lock<std::mutex> lk(mutex_);
            // A batch for an older state (before set_state) may still be in flight: wait for ours.
            cv_.wait(lk, [&] { return done_key_ && *done_key_ == s; });
            b = std::move(done_);
            err = done_error_;
            done_key_.reset();
            done_error_ = nullptr;
        }
        if (err) std::rethrow_exception(err);  // state_ unchanged: the caller may retry or stop
    }
    state_ = advance(s);
    if (options_.prefetch) request(normalize(state_));
    return b;
}

}  // namespace nuance
