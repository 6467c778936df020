// Validation of every TrainOptions value before any work (CLI and library callers alike): a bad value is an
// ErrorCode::InvalidArgument naming the flag and the value, never a SIGFPE (--checkpoint-every 0), a silent
// negative (--limit -1) or a NaN learning rate.
#pragma once
#include "train/trainer.h"

namespace nuance {

// Bounds (documented in `nuance train --help`):
constexpr int64_t kMaxTrainSteps = 1'000'000'000;
constexpr int kMaxTrainBatch = 65536;
constexpr int kMaxTrainResolution = 4096;
constexpr int64_t kMaxClassImages = 100'000;  // --num-class-images: images the base model draws for --reg-data

// Throws on the first bad option: "train: --checkpoint-every must be in 1..1000000000, got 0".
void validate_train_options(const TrainOptions& o);

// Checks o.arch against the model kind without building anything: top-level parts and every nested key known, every
// size in bounds (train_arch.h). The trainer runs the same checks when it builds the model.
void validate_train_arch(const TrainOptions& o);

}  // namespace nuance
