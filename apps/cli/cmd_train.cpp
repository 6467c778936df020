// nuance train: trains a KL autoencoder, a text-conditioned latent diffusion model or a pixel-space DDPM
// (src/train/trainer.h) with a progress bar, atomic checkpoints and bit-exact --resume.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "commands.h"
#include "core/error.h"
#include "dist/comm.h"
#include "io/json_file.h"
#include "io/weight_file.h"
#include "train/lora_train.h"
#include "train/train_options.h"
#include "cmd_train_lcm.h"
#include "train/trainer.h"

namespace nuance::cli {

Runner add_train(CLI::App& app) {
    auto o = std::make_shared<TrainOptions>();
    auto arch = std::make_shared<std::string>();
    auto precision = std::make_shared<std::string>("fp32");
    auto quiet = std::make_shared<bool>(false);
    auto lcm = std::make_shared<LcmOptions>();
    CLI::App* c = app.add_subcommand("train", "Train a VAE, a text-to-image latent diffusion model, a pixel DDPM, or a "
                                              "LoRA of an SD1.x/SD2.x/SDXL model; distil a latent consistency model "
                                              "(lcm)");
    c->add_option("--model", o->model, "vae | ldm | ddpm | lora | lcm")->capture_default_str();
    add_lcm_options(*c, *lcm);
    c->add_option("--data", o->data,
                  "Image folder (manifest.jsonl or <image>.txt captions); ddpm: Fashion-MNIST folder "
                  "(default /usr/share/datasets/fashion-mnist)");
    c->add_option("-o,--output", o->output, "Run folder: checkpoints/, train_log.jsonl, the exported model")->required();
    c->add_option("--vae", o->vae, "ldm: the VAE to train on (a `--model vae` run folder)");
    c->add_option("--init", o->init,
                  "ldm: start from a model `nuance train --model ldm` exported (<run>/model): its architecture, UNet "
                  "and text encoder, and its VAE unless --vae");
    c->add_option("--qat", o->qat,
                  "ldm: quantization-aware training for `nuance quantize --type TYPE` (int8 = q8_0, q4_0, q4_k_m, ...): "
                  "the loss is taken with the UNet weights that file will hold, the update applied to f32 weights");
    c->add_option("--arch", *arch, "Architecture overrides: JSON text or a .json file, e.g. "
                                   "'{\"unet\": {\"block_out_channels\": [32, 64]}}'");
    c->add_option("--steps", o->steps, "Total optimizer steps (1..1e9)")->capture_default_str();
    c->add_option("--batch", o->batch, "Batch size")->capture_default_str();
    c->add_option("--resolution", o->resolution, "Square image size")->capture_default_str();
    c->add_option("--lr", o->lr, "Peak learning rate (AdamW)")->capture_default_str();
    c->add_option("--min-lr", o->min_lr, "Learning rate at the end of the cosine")->capture_default_str();
    c->add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
    c->add_option("--weight-decay", o->weight_decay)->capture_default_str();
    c->add_option("--max-grad-norm", o->max_grad_norm, "Gradient clipping (global L2 norm)")->capture_default_str();
    c->add_option("--ema", o->ema_decay, "EMA decay of the weights in [0, 1) (0: off); the export uses the EMA weights")
        ->capture_default_str();
    c->add_option("--prediction", o->prediction, "epsilon | v_prediction")->capture_default_str();
    c->add_option("--min-snr-gamma", o->min_snr_gamma,
                  "ldm, ddpm, lora: Min-SNR-gamma loss weighting (Hang et al. 2023; 5 is the paper's value; 0: off)")
        ->capture_default_str();
    c->add_option("--noise-offset", o->noise_offset,
                  "ldm, ddpm, lora: add this times N(0, 1) per image and channel to the noise (kohya's noise offset; "
                  "darker darks and brighter brights; 0: off)")
        ->capture_default_str();
    c->add_option("--caption-dropout", o->caption_dropout, "P(empty caption), for classifier-free guidance")
        ->capture_default_str();
    c->add_option("--style-dropout", o->style_dropout, "P(drop the ', <style> style' suffix)")->capture_default_str();
    c->add_option("--keyword-prob", o->keyword_prob, "P(append keywords to the caption)")->capture_default_str();
    c->add_flag("--flip", o->random_flip, "Random horizontal flips");
    c->add_option("--kl-weight", o->kl_weight, "vae: weight of the KL term")->capture_default_str();
    c->add_option("--checkpoint-every", o->checkpoint_every, "Steps between checkpoints (>= 1)")->capture_default_str();
    c->add_option("--keep-checkpoints", o->keep_checkpoints, "Step files kept (>= 1)")->capture_default_str();
    c->add_option("--replica-check-every", o->replica_check_every,
                  "mpirun: compare the ranks' weights every K steps (0: at the start and at checkpoints only)")
        ->capture_default_str();
    c->add_option("--seed", o->seed, "Seed of the init, data order, noise and timesteps")->capture_default_str();
    c->add_option("--limit", o->limit, "Use only the first N images (0: all; >= 0)")->capture_default_str();
    c->add_option("--exclude-concepts", o->exclude_concepts,
                  "A file of concept names (one per line) held out of --data: rows whose label or caption is the name "
                  "or starts with it followed by ':' or ','");
    c->add_flag("--balance-concepts", o->balance_concepts,
                "Sample every concept of --data equally (the manifest's concept_id, else label, per style), not every "
                "row: the emoji set's skin-tone variants are 60% of its rows");
    c->add_option("--precision", *precision, "fp32 | bf16 (mixed: bf16 forward products, f32 master weights)")
        ->capture_default_str();
    c->add_flag("--resume", o->resume, "Continue from the newest checkpoint of the run folder");
    c->add_flag("--profile", o->profile,
                "Print the time per op (forward ops and backward rules) of a step, averaged over the steps after "
                "the first 3");
    c->add_option("--resume-from", o->resume_from, "Continue from this checkpoint file");
    c->add_flag("-q,--quiet", *quiet, "No progress bar");
    // lora (src/train/lora_train.h): defaults as kohya's (lr 1e-4, no EMA) unless given.
    c->add_option("--base", o->base, "lora: the model to adapt (SD1.x architecture: diffusers folder or single file)");
    c->add_option("--rank,--lora-rank", o->lora_rank,
                  "lora: rank of the adapters; lcm: distil into a LoRA of this rank (LCM-LoRA) instead of a full "
                  "student")
        ->capture_default_str();
    c->add_option("--alpha,--lora-alpha", o->lora_alpha,
                  "lora: alpha (the adapters are scaled by alpha / rank); lcm with --lora-rank: default the rank")
        ->capture_default_str();
    c->add_option("--targets", o->lora_targets,
                  "lora: adapted layers, parts joined by '+': attn, ff, all-linear (kohya's default), conv "
                  "(LoCon: resnet and up/down-sampling convs), ia3 (LyCORIS' IA3 preset: to_k, to_v, ff.net.2), e.g. "
                  "attn+ff, all-linear+conv; lcm with --lora-rank: "
                  "default all-linear+conv (diffusers' LCM-LoRA set)")
        ->capture_default_str();
    c->add_option("--conv-rank,--conv-dim", o->lora_conv_rank,
                  "lora: rank of the 3x3 convolutions' adapters (kohya's conv_dim; 0: --rank); needs +conv in --targets")
        ->capture_default_str();
    c->add_option("--conv-alpha", o->lora_conv_alpha,
                  "lora: alpha of the 3x3 convolutions' adapters (kohya's conv_alpha; 0: the linear adapters' scale, "
                  "conv rank * alpha / rank)")
        ->capture_default_str();
    c->add_option("--network,--algo", o->lora_algo,
                  "lora: the adapter algorithm: lora (kohya's LoRA / LoCon), loha or lokr (LyCORIS' LoHa: Hadamard "
                  "product of two rank-r pairs; LoKr: Kronecker product, see --factor), ia3 (LyCORIS' IA3: a learned "
                  "scale per output row or input channel; --targets ia3 for LyCORIS' preset), oft / boft (LyCORIS' "
                  "diag-oft: orthogonal blocks of --rank rows; butterfly OFT), glora (LyCORIS' GLoRA: W a1 a2 + b1 b2) or "
                  "full (LyCORIS' native fine-tuning: the weights' change itself, saved as diff)")
        ->capture_default_str();
    c->add_option("--factor", o->lora_factor,
                  "lora --network lokr: LyCORIS' factor, the size of the small Kronecker factor (-1: the most balanced "
                  "split of each dimension)")
        ->capture_default_str();
    c->add_flag("--decompose-both", o->lora_decompose_both,
                "lora --network lokr: also decompose the small Kronecker factor into a rank --rank pair");
    c->add_flag("--tucker", o->lora_tucker,
                "lora: a Tucker core in the 3x3 convolutions' adapters (LyCORIS' LoCon use_tucker: down 1x1, "
                "mid kxk, up 1x1; saved as lora_mid)");
    c->add_option("--constraint", o->lora_constraint,
                  "lora --network oft | boft: LyCORIS' constraint, Q's norm limit per output row (0: none; saved as the "
                  "module's alpha)")
        ->capture_default_str();
    c->add_flag("--rescaled", o->lora_rescaled,
                "lora --network oft | boft: LyCORIS' rescaled, a trained scale per output row (saved as rescale)");
    c->add_flag("--train-norm", o->lora_train_norm,
                "lora: also train the UNet blocks' GroupNorm / LayerNorm weights and biases (LyCORIS' train_norm: "
                "w_norm, b_norm beside any --network; the attention blocks' norms with attn / ff / all-linear, the "
                "resnets' with +conv)");
    c->add_option("--network-dropout", o->lora_dropout,
                  "lora (plain LoRA): kohya's network_dropout, dropout on the down projection's output while training");
    c->add_option("--rank-dropout", o->lora_rank_dropout,
                  "lora: kohya's rank_dropout (LoRA: each sample's rank channels, rescaled), LyCORIS' for LoHa / LoKr / "
                  "DoRA (rows of the weight delta)");
    c->add_option("--module-dropout", o->lora_module_dropout,
                  "lora: kohya's / LyCORIS' module_dropout, the probability of leaving an adapter out of a step");
    c->add_flag("--dora", o->lora_dora,
                "lora: DoRA (weight-decomposed LoRA): also train a magnitude per output row of each adapted "
                "weight (LyCORIS' dora_wd; saved as dora_scale; needs a float base)");
    c->add_option("--type", o->base_weight_type,
                  "lora: quantize the base's weights in memory as it loads (q8_0 | q4_0 | q4_k_m | ...: QLoRA-style, "
                  "the adapters train beside the blocks; as a GGUF base)");
    c->add_option("--network-weights", o->lora_network_weights,
                  "lora: start the adapters from this LoRA / LyCORIS file (kohya's --network_weights: its tensors "
                  "and alphas; the same --network, ranks and targets)");
    c->add_flag("--train-text-encoder", o->train_text_encoder,
                "lora: also put adapters on the text encoder (q/k/v/out_proj, fc1, fc2)");
    c->add_option("--reg-data", o->reg_data,
                  "lora: DreamBooth-style prior preservation: a folder of class images (regularisation images) "
                  "trained beside --data, half of every epoch, their loss weighted by --prior-loss-weight");
    c->add_option("--class-prompt", o->class_prompt,
                  "lora: the caption of --reg-data images without a caption file, and what the base model draws for "
                  "--num-class-images");
    c->add_option("--num-class-images", o->num_class_images,
                  "lora: with --reg-data, draw class images with the base model until the folder holds this many "
                  "(0..100000; 0: use the folder as it is)")
        ->capture_default_str();
    c->add_option("--prior-loss-weight", o->prior_loss_weight, "lora: the class images' loss weight (0..10000)")
        ->capture_default_str();
    c->add_option("--instance-prompt", o->instance_prompt,
                  "lora: the caption of --data images without a caption file (e.g. \"a photo of sks dog\")");
    c->add_option("--save-precision", o->save_precision, "lora: tensor type of the saved file: fp32 | fp16 | bf16")
        ->capture_default_str();
    CLI::Option* lr_opt = c->get_option("--lr");
    CLI::Option* ema_opt = c->get_option("--ema");
    return [o, arch, precision, quiet, lr_opt, ema_opt, lcm, c] {
        if (o->model == "lora") {
            if (lr_opt->count() == 0) o->lr = 1e-4f;
            if (ema_opt->count() == 0) o->ema_decay = 0;
        }
        o->precision = parse_usage_precision(*precision);
        if (o->precision == Precision::Auto) o->precision = Precision::FP32;
        if (o->model == "lcm") return run_lcm(*o, *lcm, *c, !arch->empty(), *quiet);
        if (!arch->empty()) {
            std::string text = *arch;
            std::string name = "--arch";
            if (text.front() != '{') {
                std::error_code ec;
                NUANCE_CHECK_CODE(std::filesystem::exists(text, ec), NotFound, "--arch: '", text,
                                  "' is neither JSON nor a readable file");
                name = text;
                text = read_small_file(text, 1u << 20, "--arch file");  // regular, at most 1 MiB
            }
            try {
                o->arch = parse_json_text(text, name);  // nested at most kMaxJsonDepth deep
            } catch (const std::exception& e) {
                fail(ErrorCode::InvalidArgument, "--arch is not valid JSON: ", e.what());
            }
        }
        try {  // every option and the architecture before any data is read: a bad value is a usage error
            validate_train_options(*o);
            validate_train_arch(*o);
        } catch (const Error& e) {
            fail(ErrorCode::InvalidArgument, "usage: ", e.what());
        }
        // mpirun: only rank 0 reports (the others train quietly beside it).
        if (!dist::is_root()) *quiet = true;
        const bool tty = !*quiet && isatty(fileno(stderr));
        int64_t last_print = 0;
        const TrainReport r = train(*o, [&](const TrainProgress& p) {
            if (*quiet) return;
            if (!p.stage.empty()) {  // work before the first step (the class images of prior preservation)
                const double eta = p.step > 0 ? p.elapsed_s / (double)p.step * (double)(p.total - p.step) : 0;
                std::fprintf(stderr, tty ? "\r%s %lld/%lld elapsed %.0fs ETA %.0fs " : "%s %lld/%lld elapsed %.0fs ETA %.0fs\n",
                             p.stage.c_str(), (long long)p.step, (long long)p.total, p.elapsed_s, eta);
                if (tty && p.step == p.total) std::fputc('\n', stderr);
                std::fflush(stderr);
                return;
            }
            const double eta = p.images_per_s > 0 ? (double)(p.total - p.step) * o->batch / p.images_per_s : 0;
            if (tty) {
                const int w = 30, fill = (int)(w * p.step / std::max<int64_t>(1, p.total));
                std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld loss %.4f (avg %.4f) lr %.2e %.1f img/s ETA %02d:%02d:%02d ",
                             o->model.c_str(), fill, "==============================", w - fill, "",
                             (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.lr, p.images_per_s,
                             (int)eta / 3600, (int)eta / 60 % 60, (int)eta % 60);
                if (p.step == p.total) std::fputc('\n', stderr);
            } else if (p.step - last_print >= std::max<int64_t>(1, std::min<int64_t>(50, p.total / 20)) ||
                       p.step == p.total || p.step == 1) {  // a log: a line every 5% (at most every 50 steps)
                last_print = p.step;
                std::fprintf(stderr, "%s step %lld/%lld loss %.4f avg %.4f lr %.2e %.1f img/s elapsed %.0fs ETA %.0fs\n",
                             o->model.c_str(), (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.lr,
                             p.images_per_s, p.elapsed_s, eta);
            }
            if (p.step == p.total)  // the last checkpoint and the export follow: say so, they take a while
                std::fprintf(stderr, "%s: writing the final checkpoint and exporting the model to '%s' ...\n",
                             o->model.c_str(),
                             o->model == "lora" ? lora_export_path(o->output).c_str()
                                                : (o->output + (o->model == "vae" ? "/vae" : "/model")).c_str());
            std::fflush(stderr);
        });
        if (!dist::is_root()) return 0;  // rank 0 reports for the run
        std::printf("trained %lld steps in %.1fs (%.1f images/s); loss %.4f -> %.4f\n"
                    "step median_s=%.4f images_per_s=%.1f (forward + backward + optimizer, batch %d)\n"
                    "checkpoint: %s\nexported: %s\n",
                    (long long)r.steps, r.seconds, r.images_per_s, r.first_loss, r.last_loss, r.median_step_s,
                    r.median_step_s > 0 ? o->batch / r.median_step_s : 0.0, o->batch, r.checkpoint.c_str(),
                    r.exported.c_str());
        if (!r.profile.empty()) std::fputs(r.profile.c_str(), stdout);
        if (r.ranks > 1)
            std::printf("data parallel: %s, global batch %d; %.2fs in collectives (%.1f%% of the run), %.2f MB "
                        "all-reduced per step by each rank\n",
                        dist::world().description.c_str(), o->batch, r.comm_seconds,
                        r.seconds > 0 ? 100.0 * r.comm_seconds / r.seconds : 0.0, r.comm_bytes_per_step / 1e6);
        return 0;
    };
}

}  // namespace nuance::cli
