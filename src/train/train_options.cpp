#include "train/train_options.h"

#include "models/quantize_weights.h"

#include <cmath>

#include "core/error.h"
#include "text/prompt_check.h"
#include "train/lora_network.h"
#include "train/qat.h"
#include "train/train_arch.h"

namespace nuance {

namespace {

void check_range(double v, double lo, double hi, bool hi_open, const char* flag) {
    NUANCE_CHECK(std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi), "train: ", flag, " must be in [", lo,
                 ", ", hi, hi_open ? ")" : "]", ", got ", v);
}

void check_int(int64_t v, int64_t lo, int64_t hi, const char* flag) {
    NUANCE_CHECK(v >= lo && v <= hi, "train: ", flag, " must be in ", lo, "..", hi, ", got ", v);
}

}  // namespace

void validate_train_options(const TrainOptions& o) {
    NUANCE_CHECK(o.model == "vae" || o.model == "ldm" || o.model == "ddpm" || o.model == "lora" || o.model == "lcm",
                 "train: unknown --model '", o.model, "' (expected vae, ldm, ddpm, lora or lcm)");
    NUANCE_CHECK(!o.output.empty(), "train: --output (the run folder) is required");
    check_int(o.steps, 1, kMaxTrainSteps, "--steps");
    check_int(o.batch, 1, kMaxTrainBatch, "--batch");
    check_int(o.resolution, 8, kMaxTrainResolution, "--resolution");
    check_int(o.warmup, 0, kMaxTrainSteps, "--warmup");
    check_int(o.checkpoint_every, 1, kMaxTrainSteps, "--checkpoint-every");
    check_int(o.keep_checkpoints, 1, 1'000'000, "--keep-checkpoints");
    check_int(o.replica_check_every, 0, kMaxTrainSteps, "--replica-check-every");
    check_int(o.limit, 0, INT64_MAX, "--limit");
    NUANCE_CHECK(o.exclude_concepts.empty() || o.model != "ddpm",
                 "train: --exclude-concepts needs an image folder with labels or captions (not --model ddpm)");
    NUANCE_CHECK(!o.balance_concepts || o.model != "ddpm",
                 "train: --balance-concepts needs an image folder with labels or captions (not --model ddpm)");
    NUANCE_CHECK(std::isfinite(o.lr) && o.lr > 0 && o.lr <= 10, "train: --lr must be in (0, 10], got ", o.lr);
    check_range(o.min_lr, 0, o.lr, false, "--min-lr");
    check_range(o.weight_decay, 0, 10, false, "--weight-decay");
    NUANCE_CHECK(std::isfinite(o.max_grad_norm) && o.max_grad_norm > 0, "train: --max-grad-norm must be a finite ",
                 "number > 0, got ", o.max_grad_norm);
    check_range(o.ema_decay, 0, 1, true, "--ema");
    check_range(o.caption_dropout, 0, 1, false, "--caption-dropout");
    check_range(o.style_dropout, 0, 1, false, "--style-dropout");
    check_range(o.keyword_prob, 0, 1, false, "--keyword-prob");
    NUANCE_CHECK(std::isfinite(o.kl_weight) && o.kl_weight >= 0, "train: --kl-weight must be a finite number >= 0, got ",
                 o.kl_weight);
    NUANCE_CHECK(o.prediction == "epsilon" || o.prediction == "v_prediction",
                 "train: --prediction must be epsilon or v_prediction, got '", o.prediction, "'");
    check_range(o.min_snr_gamma, 0, 1000, false, "--min-snr-gamma");
    check_range(o.noise_offset, 0, 1, false, "--noise-offset");
    NUANCE_CHECK((o.min_snr_gamma == 0 && o.noise_offset == 0) || o.model == "ldm" || o.model == "ddpm" ||
                     o.model == "lora",
                 "train: --min-snr-gamma and --noise-offset are for the diffusion objectives (--model ldm, ddpm, lora)");
    if (o.model == "lora") {
        NUANCE_CHECK(!o.base.empty(), "train: --model lora needs --base (the model to adapt, e.g. models/nuance-emoji)");
        check_int(o.lora_rank, 1, kMaxLoraRank, "--rank");
        NUANCE_CHECK(std::isfinite(o.lora_alpha) && o.lora_alpha > 0 && o.lora_alpha <= 1e6,
                     "train: --alpha must be a finite number in (0, 1e6], got ", o.lora_alpha);
        const LoraTargets targets = parse_lora_targets(o.lora_targets);
        check_int(o.lora_conv_rank, 0, kMaxLoraRank, "--conv-rank");
        check_range(o.lora_conv_alpha, 0, 1e6, false, "--conv-alpha");
        NUANCE_CHECK((o.lora_conv_rank == 0 && o.lora_conv_alpha == 0) || targets.conv,
                     "train: --conv-rank / --conv-alpha size the 3x3 convolutions' adapters, which --targets '",
                     o.lora_targets, "' does not select (add +conv)");
        NUANCE_CHECK(o.lora_conv_alpha == 0 || o.lora_conv_rank > 0, "train: --conv-alpha needs --conv-rank");
        const LoraAlgo algo = parse_lora_algo(o.lora_algo);
        NUANCE_CHECK(o.lora_factor == -1 || (o.lora_factor >= 1 && o.lora_factor <= (int64_t)1 << 20),
                     "train: --factor must be -1 or in 1..", (int64_t)1 << 20, ", got ", o.lora_factor);
        NUANCE_CHECK(algo == LoraAlgo::LoKr || (o.lora_factor == -1 && !o.lora_decompose_both),
                     "train: --factor and --decompose-both are for --network lokr");
        check_range(o.lora_constraint, 0, 1e6, false, "--constraint");
        NUANCE_CHECK(algo == LoraAlgo::OFT || algo == LoraAlgo::BOFT || (o.lora_constraint == 0 && !o.lora_rescaled),
                     "train: --constraint and --rescaled are for --network oft | boft");
        NUANCE_CHECK(!o.lora_tucker || targets.conv, "train: --tucker puts a core in the 3x3 convolutions' adapters, ",
                     "which --targets '", o.lora_targets, "' does not select (add +conv)");
        check_range(o.lora_dropout, 0, 1, true, "--network-dropout");
        check_range(o.lora_rank_dropout, 0, 1, true, "--rank-dropout");
        check_range(o.lora_module_dropout, 0, 1, true, "--module-dropout");
        NUANCE_CHECK(o.lora_dropout == 0 || (algo == LoraAlgo::LoRA && !o.lora_dora),
                     "train: --network-dropout (kohya's neuron dropout on the down projection's output) is for plain ",
                     "LoRA: LyCORIS implements none for LoHa / LoKr, and DoRA runs the merged weight");
        NUANCE_CHECK(o.ema_decay == 0, "train: --model lora keeps no EMA (pass --ema 0)");
        check_int(o.num_class_images, 0, kMaxClassImages, "--num-class-images");
        check_range(o.prior_loss_weight, 0, 1e4, false, "--prior-loss-weight");
        NUANCE_CHECK(!o.reg_data.empty() || (o.num_class_images == 0 && o.class_prompt.empty()),
                     "train: --class-prompt and --num-class-images need --reg-data (the folder of class images)");
        NUANCE_CHECK(o.num_class_images == 0 || !o.class_prompt.empty(),
                     "train: --num-class-images needs --class-prompt (what the base model draws)");
        NUANCE_CHECK(o.save_precision == "fp32" || o.save_precision == "fp16" || o.save_precision == "bf16",
                     "train: --save-precision must be fp32, fp16 or bf16, got '", o.save_precision, "'");
        check_prompt_text(o.instance_prompt, "--instance-prompt");  // UTF-8, no NUL, at most kMaxPromptBytes
        check_prompt_text(o.class_prompt, "--class-prompt");
        if (!o.base_weight_type.empty()) parse_weight_type(o.base_weight_type, "train: --type");
        NUANCE_CHECK(o.base_weight_type.empty() || !o.lora_dora, "train: --dora needs the base's float weights (the ",
                     "merged weight's norm); drop --type");
    } else {
        NUANCE_CHECK(o.base.empty(), "train: --base is for --model lora only");
        NUANCE_CHECK(!o.train_text_encoder, "train: --train-text-encoder is for --model lora only (ldm and ddpm ",
                     "always train their text encoder)");
        NUANCE_CHECK(o.reg_data.empty() && o.class_prompt.empty() && o.instance_prompt.empty() &&
                         o.num_class_images == 0 && o.prior_loss_weight == 1.0f,
                     "train: --reg-data, --class-prompt, --instance-prompt, --num-class-images and --prior-loss-weight ",
                     "are for --model lora (DreamBooth-style prior preservation)");
        NUANCE_CHECK(o.save_precision == "fp32", "train: --save-precision is for --model lora (the other models ",
                     "export the weights as they train them)");
        NUANCE_CHECK(o.lora_conv_rank == 0 && o.lora_conv_alpha == 0, "train: --conv-rank / --conv-alpha are for ",
                     "--model lora");
        NUANCE_CHECK(o.lora_algo == "lora" && o.lora_factor == -1 && !o.lora_decompose_both && !o.lora_dora,
                     "train: --network, --factor, --decompose-both and --dora are for --model lora");
        NUANCE_CHECK(!o.lora_tucker, "train: --tucker is for --model lora");
        NUANCE_CHECK(!o.lora_train_norm, "train: --train-norm is for --model lora (ldm trains every norm already)");
        NUANCE_CHECK(o.lora_constraint == 0 && !o.lora_rescaled, "train: --constraint and --rescaled are for --model lora");
        NUANCE_CHECK(o.lora_network_weights.empty(), "train: --network-weights is for --model lora (ldm: --init)");
        NUANCE_CHECK(o.base_weight_type.empty(), "train: --type (a quantized base) is for --model lora (ldm: --qat)");
        NUANCE_CHECK(o.lora_dropout == 0 && o.lora_rank_dropout == 0 && o.lora_module_dropout == 0,
                     "train: --network-dropout, --rank-dropout and --module-dropout are for --model lora");
    }
    NUANCE_CHECK(o.model != "ldm" || !o.vae.empty() || !o.init.empty(), "train: --model ldm needs --vae (a trained ",
                 "VAE: run `nuance train --model vae` first) or --init (a trained model, whose VAE it takes)");
    NUANCE_CHECK(o.init.empty() || o.model == "ldm", "train: --init is for --model ldm (a model `nuance train --model ",
                 "ldm` exported); --model lora adapts other models (--base)");
    NUANCE_CHECK(o.init.empty() || o.arch.empty(), "train: --init takes the model's own architecture; drop --arch");
    if (!o.qat.empty()) {
        NUANCE_CHECK(o.model == "ldm", "train: --qat is for --model ldm (usually with --init, to fine-tune a trained ",
                     "model for its quantized file), not --model ", o.model);
        const std::optional<QuantizeRecipe> r = qat_recipe(o.qat);
        NUANCE_CHECK(r.has_value(), "train: --qat '", o.qat, "' is not a quantization type (int8 or one of ",
                     quantize_recipe_names(), ")");
    }
}

void validate_train_arch(const TrainOptions& o) {
    nlohmann::json a = merged_arch(o);
    // The same constructors the trainer uses; the sizes that depend on data (channels) are placeholders here.
    ClipTextConfig te;
    if (a.contains("text_encoder")) te = clip_config_from_arch(a["text_encoder"]);
    if (a.contains("unet")) unet_config_from_arch(a["unet"], 4, te.hidden);
    if (a.contains("vae")) vae_config_from_arch(a["vae"], 3);
}

}  // namespace nuance
