// Data-parallel training over the ranks of dist::world() (issue 17). Every rank builds the same global batch (the
// data order is a function of seed and epoch, not of the number of ranks), draws the same random numbers for all of
// it, and computes the loss of its own contiguous rows only; the gradients are then summed over the ranks, each
// weighted by its rows / the global batch, which is the gradient of the global batch's mean loss. The optimizer step
// then runs identically everywhere, so the weights stay bit-identical across ranks (check_replicas proves it).
// In a world of one every function here is a no-op: single-process training is unchanged, bit for bit.
#pragma once

#include <cstdint>

#include "autograd/param_grads.h"
#include "dist/comm.h"
#include "train/data_loader.h"

namespace nuance {

// This rank's rows of a global batch of `global` samples (`--batch`); an Error when there are more ranks than rows.
dist::Range local_rows(int64_t global);

// The rows [r.begin, r.end) of a batch: images, captions and indices.
Batch batch_rows(const Batch& b, dist::Range r);

// Scales every defined trainable gradient by `local_weight` (this rank's rows / global rows) and sums them over the
// ranks in fp32, in buckets; an Error if the ranks disagree on which parameters have gradients.
void reduce_gradients(ParamGrads& params, double local_weight);

// FNV-1a of every parameter's bytes in entry order.
uint64_t params_fingerprint(const ParamGrads& params);

// Compares the ranks' fingerprints; an Error naming the ranks whose weights differ from rank 0's at `step`.
void check_replicas(const ParamGrads& params, int64_t step);

}  // namespace nuance
