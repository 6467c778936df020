// The training loop every `nuance train` model shares (trainer.cpp's vae/ldm/ddpm, lora_train.cpp, lcm_distill.cpp):
// the run folder's checkpoints/ (stale temp files removed, --resume / --resume-from), then per step the step's
// Mt19937(mix(seed, step, salt)), the warmup + cosine learning rate, this rank's rows of the next batch, the loss on the
// tape with the task's ParamGrads bound, backward, the data-parallel all-reduce of gradients and loss, gradient
// clipping, the optimizer step, the task's after-step update (EMA, a target network), replica checks, progress,
// train_log.jsonl, per-op profiling (--profile) and atomic checkpoints every --checkpoint-every steps.
// A task (TrainTask) supplies the loss, the checkpoint format and its parameter sets; exporting stays the task's.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "autograd/param_grads.h"
#include "autograd/var.h"
#include "core/mt19937.h"
#include "dist/comm.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace nuance {

class TrainTask {
public:
    virtual ~TrainTask() = default;
    // The loss of this rank's rows `b` of a global batch of TrainOptions::batch, on the tape (param_set() is bound);
    // every random number of the step comes from `rng`.
    virtual Var loss(const Batch& b, Mt19937& rng) = 0;
    // After backward, before the gradients are reduced, clipped and applied (quantization-aware training puts the
    // master weights back here); default nothing.
    virtual void after_backward() {}
    // After the optimizer step (EMA of the weights, a target network); default nothing.
    virtual void after_step() {}
    virtual void save(const std::string& path) = 0;  // a checkpoint of the state at step_counter()
    virtual void load(const std::string& path) = 0;  // sets step_counter() and the data loader's state
    // What the forward binds and the gradients are reduced over; what ranks compare (check_replicas) and their
    // optimizer, data loader and step counter.
    virtual ParamGrads& param_set() = 0;
    virtual ParamGrads& replica_set() { return param_set(); }
    virtual AdamW& optimizer() = 0;
    virtual DataLoader& data_loader() = 0;
    virtual int64_t& step_counter() = 0;
};

struct TrainLoopOptions {
    uint64_t rng_salt = 0x5eed;  // the per-step Mt19937 is mix_seed(seed, step, rng_salt)
    dist::Range rows{0, 0};      // this rank's rows of each batch; empty: all of them
};

// Creates <output>/checkpoints, resumes when asked, runs the steps up to TrainOptions::steps and returns the report
// (rank 0's checkpoint path; `exported` empty: the caller exports).
TrainReport run_train_loop(const TrainOptions& o, TrainTask& task, const TrainLoopOptions& lo,
                           const TrainCallback& on_step);

// The image-folder data set every image task (vae, ldm, lora, lcm) trains on: --data with --resolution, --flip, the
// caption augmentation and --exclude-concepts from the options, decoded once; checked to hold at least `min_rows`
// images (< 0: a whole batch). default_caption: the caption of images without a caption file (empty: an error).
std::unique_ptr<ImageCaptionDataset> make_image_dataset(const TrainOptions& o, float caption_dropout,
                                                        const std::string& default_caption = {},
                                                        int64_t min_rows = -1);
// The loader options of a training run: batch size, and with --balance-concepts the concept weights of `data`
// (nullptr: a data set without concepts, Fashion-MNIST).
LoaderOptions train_loader_options(const TrainOptions& o, const ImageCaptionDataset* data);

// Every parameter of `m` as an owned F32 value: a frozen base (LoRA) or teacher (LCM) loaded in f16/bf16 runs its
// differentiable forward on F32 leaves, as ParamGrads requires. Quantized weights (a GGUF base) are kept as blocks:
// frozen, their products read the blocks and their input gradients use the dequantized layer.
void widen_params_to_f32(Module& m);

// torch's default init of a conv / linear weight (kaiming_uniform with a = sqrt(5)): U(+-1/sqrt(fan_in)) per element in
// order, F32 of `shape`; fan_in below 1 counts as 1.
Tensor kaiming_uniform(const Shape& shape, int64_t fan_in, Mt19937& rng);

}  // namespace nuance
