// `nuance train`: the training loops of the survey's first-stage and second-stage models, on the same model classes
// the SD path samples from (AutoencoderKL, UNet2DConditionModel, ClipTextModel), in small configs.
//   vae   KL autoencoder (Kingma & Welling 2014; the LDM first stage): L1 + L2 reconstruction + kl_weight * KL.
//   ldm   text-conditioned latent diffusion (Rombach et al. 2022): a frozen trained VAE, a CLIP-style text encoder
//         trained jointly with the UNet, ε or v objective (Ho et al. 2020; Salimans & Ho 2022), caption dropout
//         for classifier-free guidance.
//   ddpm  the same denoiser in pixel space (no VAE), e.g. on Fashion-MNIST.
// A run folder holds checkpoints/step-NNNNNNN.safetensors (weights, AdamW state, EMA, data order, all the
// options) written atomically every N steps, train_log.jsonl, and the exported model: <out>/vae (diffusers VAE
// folder) for `vae`, <out>/model (a diffusers pipeline folder `nuance generate -m` loads) for `ldm`.
// Determinism: the batch order is a function of (seed, epoch, position) (DataLoader), and each step's noise and
// timesteps of Mt19937(mix(seed, step)); so --resume continues bit-exactly.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace nuance {

class NoiseSchedule;

struct TrainOptions {
    std::string model = "ldm";  // "vae" | "ldm" | "ddpm" | "lora" (train/lora_train.h)
    std::string data;           // image folder (manifest.jsonl or sidecar .txt); ddpm: the Fashion-MNIST folder
    std::string exclude_concepts;  // a file of concept names held out of `data` (DatasetOptions::exclude_concepts)
    // Every concept the same share of an epoch (concept_balance_weights), instead of every row.
    bool balance_concepts = false;
    std::string output;         // run folder
    std::string vae;            // ldm: a trained VAE (a `vae` run folder, its vae/ export, or a diffusers VAE folder)
    nlohmann::json arch = nlohmann::json::object();  // architecture overrides (see default_arch)
    // ldm: start from a model `nuance train --model ldm` exported (its <out>/model folder): its architecture, UNet and
    // text-encoder weights, and its VAE unless `vae` is given. Fine-tuning, and the base of quantization-aware training.
    std::string init;
    // ldm: quantization-aware training (train/qat.h) for `nuance quantize --type qat`: "q8_0" (or "int8"), "q4_0",
    // "q4_k_m", ... (parse_quantize_recipe's names); empty: off.
    std::string qat;
    int64_t steps = 1000;
    int batch = 32;
    int resolution = 32;
    float lr = 2e-4f;
    float min_lr = 0.0f;
    int64_t warmup = 100;
    float weight_decay = 0.01f;
    double max_grad_norm = 1.0;
    float ema_decay = 0.999f;  // 0: no EMA
    std::string prediction = "epsilon";  // ldm/ddpm: "epsilon" | "v_prediction"
    float caption_dropout = 0.1f;
    float style_dropout = 0.2f;
    float keyword_prob = 0.25f;
    bool random_flip = false;
    float kl_weight = 1e-6f;  // vae
    int64_t checkpoint_every = 500;
    int keep_checkpoints = 3;  // older step files are deleted (the last one always stays)
    // mpirun: compare the ranks' weights (a fingerprint) every K steps (0: only at start and at checkpoints; debug
    // builds check every 10 steps by default).
#ifdef NDEBUG
    int64_t replica_check_every = 0;
#else
    int64_t replica_check_every = 10;
#endif
    uint64_t seed = 0;
    int64_t limit = 0;  // > 0: use only the first `limit` images
    // BF16: mixed precision (bf16 products, f32 master weights, gradients and optimizer state).
    Precision precision = Precision::FP32;
    bool resume = false;      // continue from the newest checkpoint in <output>/checkpoints
    std::string resume_from;  // or from this checkpoint file
    // Time every op (forward ops and each backward rule, "<op> backward") of the steps after the first 3 (which
    // create primitives and touch memory first) and return the per-step profile in TrainReport::profile.
    bool profile = false;
    // lora (train/lora_train.h): the model to adapt (SD1.x architecture: a diffusers folder or single file) and the
    // adapter's rank, alpha (scale alpha / rank), target layers (train/lora_network.h) and text-encoder adapters.
    std::string base;
    int64_t lora_rank = 8;
    double lora_alpha = 8;
    std::string lora_targets = "attn";
    // kohya's conv_dim / conv_alpha: rank and alpha of the 3x3 convolutions' adapters (0: lora_rank; alpha 0: the
    // linear adapters' scale, conv_rank * lora_alpha / lora_rank).
    int64_t lora_conv_rank = 0;
    double lora_conv_alpha = 0;
    // The adapter algorithm: "lora" (kohya's LoRA / LoCon), "loha" or "lokr" (LyCORIS, train/lora_network.h); LoKr's
    // factor (-1: balanced) and decompose_both.
    std::string lora_algo = "lora";
    int64_t lora_factor = -1;
    bool lora_decompose_both = false;
    bool lora_dora = false;  // DoRA's trained magnitude (LyCORIS' dora_wd) on top of lora_algo
    bool lora_train_norm = false;
    double lora_constraint = 0;    // OFT / BOFT: LyCORIS' constraint (the norm of Q per output row; 0: none)
    bool lora_rescaled = false;    // OFT / BOFT: LyCORIS' rescaled (a trained scale per output row)  // LyCORIS' train_norm: the UNet blocks' norms train w_norm / b_norm too
    bool lora_tucker = false;  // LyCORIS' LoCon use_tucker: a Tucker core on the 3x3 convolutions' LoRA adapters
    // Dropouts while training (kohya's network_dropout / rank_dropout / module_dropout, LyCORIS' for LoHa / LoKr / DoRA;
    // train/lora_network.h), each a probability in [0, 1).
    double lora_dropout = 0, lora_rank_dropout = 0, lora_module_dropout = 0;
    bool train_text_encoder = false;
    // lora: kohya's --network_weights, a LoRA / LyCORIS file the adapters start from (LoraNetwork::init_from).
    std::string lora_network_weights;
    // lora: the base's weights quantized in memory as it loads (--type q8_0 | q4_0 | q4_k_m ...: models/
    // quantize_weights.h), QLoRA-style; "" = as the file stores them.
    std::string base_weight_type;
    // lora, DreamBooth-style prior preservation (train/lora_train.h): a folder of class images trained beside `data`
    // with their loss weighted by prior_loss_weight (kohya's reg images: half of every epoch's samples), and captions
    // for images that have no caption file: instance_prompt for `data`, class_prompt for `reg_data`. With
    // num_class_images > 0 the base model first draws the class images reg_data lacks (diffusers' DreamBooth).
    std::string reg_data;
    std::string instance_prompt, class_prompt;
    int64_t num_class_images = 0;
    float prior_loss_weight = 1.0f;
    // ldm, ddpm, lora: Min-SNR-gamma loss weighting (0: off; kohya / diffusers --min_snr_gamma, 5 is the paper's) and
    // kohya's --noise_offset (the noise gets offset * N(0, 1) per row and channel; 0: off).
    float min_snr_gamma = 0;
    float noise_offset = 0;
    // lora: the saved file's tensor type, kohya's --save_precision: "fp32" | "fp16" | "bf16".
    std::string save_precision = "fp32";
};

// Built-in architecture of each model kind (the default model's), as JSON; TrainOptions::arch entries override it.
nlohmann::json default_arch(const std::string& model);
// default_arch(o.model) with o.arch's parts merged in; unknown parts and non-object parts are errors.
nlohmann::json merged_arch(const TrainOptions& o);

struct TrainProgress {
    int64_t step = 0;   // steps done
    int64_t total = 0;  // steps to do in all
    double loss = 0;    // this step's loss
    double loss_avg = 0;  // mean over the last 50 steps
    double lr = 0;
    double images_per_s = 0;
    double elapsed_s = 0;
    // Work before the first step: "class images" (step of total drawn by the base model for --num-class-images;
    // loss, lr and images_per_s unset). Empty for training steps.
    std::string stage;
};

struct TrainReport {
    int64_t steps = 0;
    double first_loss = 0, last_loss = 0;  // mean loss of the first and last quarter of this run (<= 50 steps each)
    double seconds = 0;
    double images_per_s = 0;
    // Median time of one step's forward + backward + clip + AdamW + EMA (no data loading; first 3 steps skipped).
    double median_step_s = 0;
    std::string checkpoint;  // last checkpoint written
    std::string exported;    // exported model folder (rank 0; empty on the other ranks)
    // Data parallelism (mpirun): ranks, seconds spent in collectives, bytes all-reduced per step by this rank.
    int ranks = 1;
    double comm_seconds = 0;
    double comm_bytes_per_step = 0;
    std::string profile;  // TrainOptions::profile: format_op_profile's lines, per step (part=train_step)
};

using TrainCallback = std::function<void(const TrainProgress&)>;

TrainReport train(const TrainOptions& options, const TrainCallback& on_step = {});

// The diffusion objective's input and target (Ho et al. 2020; Salimans & Ho 2022): with a = alphas_cumprod[t],
// x_t = sqrt(a) x0 + sqrt(1 - a) noise; target = noise (epsilon) or sqrt(a) noise - sqrt(1 - a) x0 (v_prediction).
// x0, noise [B, C, H, W]; t: B integer timesteps of the schedule.
struct NoisedBatch {
    Tensor x_t, target;
    Tensor timesteps;  // [B] F32, for the UNet
};
NoisedBatch add_training_noise(const Tensor& x0, const Tensor& noise, const std::vector<int64_t>& t,
                               const NoiseSchedule& schedule, const std::string& prediction);

// Min-SNR-gamma loss weights (Hang et al. 2023, as diffusers' and kohya's --min_snr_gamma): per row,
// min(SNR(t), gamma) / SNR(t) for epsilon and min(SNR(t), gamma) / (SNR(t) + 1) for v_prediction, SNR = a / (1 - a);
// [B, 1, 1, 1] F32; SNR 0 (a zero-terminal-SNR schedule's last step) weighs 1 for epsilon. gamma > 0.
Tensor min_snr_weights(const std::vector<int64_t>& t, const NoiseSchedule& schedule, float gamma,
                       const std::string& prediction);

}  // namespace nuance
