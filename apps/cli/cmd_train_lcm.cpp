// nuance train --model lcm: see cmd_train_lcm.h.
#include "cmd_train_lcm.h"

#include <unistd.h>

#include <cstdio>

#include "core/error.h"
#include "dist/comm.h"
#include "train/lora_train.h"

namespace nuance::cli {

void add_lcm_options(CLI::App& c, LcmOptions& l) {
    c.add_option("--teacher", l.teacher, "lcm: the model to distil (a diffusers folder, e.g. models/nuance-emoji)");
    c.add_option("--w-min", l.w_min, "lcm: smallest guidance w (CFG scale 1 + w) the student learns (with --lora-rank: "
                                     "the LoRA is trained over [w-min, w-max], as diffusers' LCM-LoRA script)")
        ->capture_default_str();
    c.add_option("--w-max", l.w_max, "lcm: largest guidance w")->capture_default_str();
    c.add_option("--num-ddim-steps", l.num_ddim_steps, "lcm: the DDIM solver's grid (skip T/N timesteps per step)")
        ->capture_default_str();
    c.add_option("--ema-decay", l.target_ema, "lcm: decay of the target network (EMA of the student)")
        ->capture_default_str();
    c.add_option("--loss", l.loss, "lcm: huber | l2")->capture_default_str();
    c.add_option("--huber-c", l.huber_c, "lcm: the Huber loss's c")->capture_default_str();
    c.add_option("--w-embedding-dim", l.w_embedding_dim, "lcm: width of the student's guidance embedding "
                                                         "(time_cond_proj_dim)")
        ->capture_default_str();
    c.add_option("--lcm-guidance", l.default_guidance,
                 "lcm: the exported model's default --cfg-scale (1 + w); 0: the teacher's, clamped to 1 + [w-min, w-max]. "
                 "With --lora-rank: the guidance scale baked into the LoRA (0: the teacher's default)")
        ->capture_default_str();
}

int run_lcm(TrainOptions& o, LcmOptions& l, const CLI::App& train, bool arch_given, bool quiet) {
    const auto given = [&](const char* flag) { return train.get_option(flag)->count() > 0; };
    try {  // every option before the teacher or the data is read: a bad value is a usage error
        NUANCE_CHECK(!arch_given, "--arch does not apply to --model lcm (the student has the teacher's architecture)");
        NUANCE_CHECK(o.vae.empty(), "--vae does not apply to --model lcm (the teacher's VAE is used)");
        l.lora = given("--lora-rank");
        if (l.lora) {  // LCM-LoRA: diffusers' defaults (alpha = rank, attention + feed-forward + resnet layers)
            for (const char* f : {"--ema-decay", "--w-embedding-dim"})
                NUANCE_CHECK(!given(f), f, " does not apply to LCM-LoRA (--lora-rank): the LoRA has no guidance input "
                             "and is its own target network");
            // --w-min / --w-max: each sample's guidance from that range (diffusers' LCM-LoRA script); else one
            // baked scale (--lcm-guidance, default the teacher's)
            l.lora_w_range = given("--w-min") || given("--w-max");
            if (!given("--lora-alpha")) o.lora_alpha = (double)o.lora_rank;
            if (!given("--targets")) o.lora_targets = "all-linear+conv";
        } else {
            NUANCE_CHECK(!given("--lora-alpha") && !given("--targets"), "--lora-alpha and --targets apply to ",
                         "--model lcm only with --lora-rank (LCM-LoRA)");
        }
        validate_lcm_options(o, l);
    } catch (const Error& e) {
        fail(ErrorCode::InvalidArgument, "usage: ", e.what());
    }
    if (!dist::is_root()) quiet = true;  // mpirun: rank 0 reports for the run
    const bool tty = !quiet && isatty(fileno(stderr));
    int64_t last_print = 0;
    const TrainReport r = train_lcm(o, l, [&](const TrainProgress& p) {
        if (quiet) return;
        const double eta = p.images_per_s > 0 ? (double)(p.total - p.step) * o.batch / p.images_per_s : 0;
        if (tty) {
            std::fprintf(stderr, "\rlcm %lld/%lld loss %.5f (avg %.5f) lr %.2e %.1f img/s ETA %02d:%02d:%02d ",
                         (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.lr, p.images_per_s,
                         (int)eta / 3600, (int)eta / 60 % 60, (int)eta % 60);
            if (p.step == p.total) std::fputc('\n', stderr);
        } else if (p.step - last_print >= std::max<int64_t>(1, std::min<int64_t>(50, p.total / 20)) ||
                   p.step == p.total || p.step == 1) {
            last_print = p.step;
            std::fprintf(stderr, "lcm step %lld/%lld loss %.5f avg %.5f lr %.2e %.1f img/s elapsed %.0fs ETA %.0fs\n",
                         (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.lr, p.images_per_s, p.elapsed_s,
                         eta);
        }
        if (p.step == p.total)
            std::fprintf(stderr, "lcm: writing the final checkpoint and exporting the %s to '%s' ...\n",
                         l.lora ? "LoRA" : "student",
                         l.lora ? lora_export_path(o.output).c_str() : (o.output + "/model").c_str());
        std::fflush(stderr);
    });
    if (!dist::is_root()) return 0;
    std::printf("distilled %lld steps in %.1fs (%.1f images/s); loss %.5f -> %.5f\n"
                "step median_s=%.4f (teacher CFG pair + target + student forward/backward + AdamW, batch %d)\n"
                "checkpoint: %s\nexported: %s\n",
                (long long)r.steps, r.seconds, r.images_per_s, r.first_loss, r.last_loss, r.median_step_s, o.batch,
                r.checkpoint.c_str(), r.exported.c_str());
    if (r.ranks > 1)
        std::printf("data parallel: %s, global batch %d; %.2fs in collectives, %.2f MB all-reduced per step by each "
                    "rank\n",
                    dist::world().description.c_str(), o.batch, r.comm_seconds, r.comm_bytes_per_step / 1e6);
    return 0;
}

}  // namespace nuance::cli
