// DataLoader: shuffled batches from a Dataset in an order fixed by (seed, epoch), the next batch decoded on a
// background thread while the caller trains on the current one.
//
// Determinism: epoch e visits the permutation Fisher-Yates(Mt19937(mix(seed, e))); the sample at position p of
// epoch e gets its own Mt19937(mix(seed, e, p)) for flips and caption dropout. A batch is therefore a pure
// function of LoaderState {seed, epoch, position}: save state() with a checkpoint, set_state() after loading it,
// and the following batches are bit-identical to those of an uninterrupted run, prefetching or not.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "train/dataset.h"

namespace nuance {

struct LoaderState {
    uint64_t seed = 0;
    int64_t epoch = 0;     // epochs completed before the next batch
    int64_t position = 0;  // index of the next sample in this epoch's order
    bool operator==(const LoaderState&) const = default;
};

struct Batch {
    Tensor images;                      // [B, C, H, W] F32 in [-1, 1]
    std::vector<std::string> captions;  // B captions (augmented)
    std::vector<int64_t> indices;       // B data set indices
    int64_t epoch = 0;                  // the epoch these samples belong to
};

struct LoaderOptions {
    int batch_size = 1;
    bool shuffle = true;
    // Drop an epoch's last partial batch (every batch then has batch_size samples); else it is returned short.
    bool drop_last = true;
    bool prefetch = true;  // decode the next batch on a background thread
    // Sampling weights, one per row (empty: every row exactly once per epoch). An epoch keeps size() samples: row i
    // appears floor or ceil of size() * w_i / sum(w) times (systematic sampling, one random offset per epoch), then
    // the epoch is shuffled. Each weight finite and >= 0, their sum > 0 (concept_balance_weights builds them).
    std::vector<double> weights;
};

class DataLoader {
public:
    // The data set must outlive the loader.
    DataLoader(const Dataset& dataset, uint64_t seed, const LoaderOptions& options = {});
    ~DataLoader();
    DataLoader(const DataLoader&) = delete;
    DataLoader& operator=(const DataLoader&) = delete;

    // The next batch; moves to the next epoch when this one is used up. Errors from the data set (an unreadable
    // image) are rethrown here, naming the file.
    Batch next();
    LoaderState state() const { return state_; }  // the state after the last batch next() returned
    void set_state(const LoaderState& state);
    int64_t batches_per_epoch() const;
    int64_t size() const { return dataset_.size(); }

    // The order of epoch `epoch`: a permutation of 0..size-1 (the identity without shuffle), or with weights the
    // size() rows drawn for the epoch (shuffled, or in row order without shuffle).
    std::vector<int64_t> epoch_order(int64_t epoch) const;

private:
    // The batch that starts at `s` (after normalising an exhausted epoch) and the state that follows it.
    Batch make_batch(const LoaderState& s) const;
    std::vector<int64_t> compute_order(uint64_t seed, int64_t epoch) const;
    LoaderState normalize(LoaderState s) const;
    LoaderState advance(const LoaderState& s) const;
    void worker_loop();
    void request(const LoaderState& s);  // caller holds no lock

    const Dataset& dataset_;
    LoaderOptions options_;
    LoaderState state_;

    // The permutation of the epoch being read, computed once per (seed, epoch).
    mutable std::mutex order_mutex_;
    mutable int64_t order_epoch_ = -1;
    mutable uint64_t order_seed_ = 0;
    mutable std::vector<int64_t> order_;

    // Prefetch: one request at a time; the result is keyed by the state it was computed from.
    std::thread worker_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::optional<LoaderState> pending_;  // requested, not started
    std::optional<LoaderState> busy_key_;  // being computed
    std::optional<LoaderState> done_key_;
    Batch done_;
    std::exception_ptr done_error_;
};

// splitmix64 of the words, chained: the seeds of epoch permutations and per-sample rngs.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

}  // namespace nuance
