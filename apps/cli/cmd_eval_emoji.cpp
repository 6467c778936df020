// nuance train-classifier / nuance eval-emoji: the emoji category classifier (src/train/emoji_classifier.h) and the
// quality measurement of an emoji text-to-image model with it (src/eval/emoji_eval.h).
#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "io/atomic_file.h"
#include "io/image.h"
#include "core/error.h"
#include "eval/emoji_eval.h"
#include "train/emoji_classifier.h"

namespace nuance::cli {

namespace {

struct ClassifierArgs {
    ClassifierTrainOptions o;
    int threads = 0;
    bool quiet = false;
};

struct EvalArgs {
    EmojiEvalOptions o;
    std::string json, sheet_prompts, precision = "auto";
    int threads = 0;
    bool quiet = false;
};

void set_threads(int threads) {
    if (threads > 0) cpu::set_num_threads(threads);  // else OpenMP's default (OMP_NUM_THREADS or all cores)
}

int run_train_classifier(ClassifierArgs& a) {
    set_threads(a.threads);
    const bool tty = !a.quiet && isatty(fileno(stderr));
    int64_t last = 0;
    const ClassifierTrainReport r = train_emoji_classifier(a.o, [&](const ClassifierTrainProgress& p) {
        if (a.quiet) return;
        if (tty) {
            std::fprintf(stderr, "\rclassifier epoch %d step %lld/%lld loss %.4f (avg %.4f) %.0fs ", p.epoch,
                         (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.elapsed_s);
            if (p.step == p.total) std::fputc('\n', stderr);
        } else if (p.step - last >= 50 || p.step == p.total || p.step == 1) {
            last = p.step;
            std::fprintf(stderr, "classifier epoch %d step %lld/%lld loss %.4f avg %.4f elapsed %.0fs\n", p.epoch,
                         (long long)p.step, (long long)p.total, p.loss, p.loss_avg, p.elapsed_s);
        }
    });
    std::printf("trained the emoji classifier: %lld steps (%d epochs) in %.1fs; loss %.4f -> %.4f\n"
                "train accuracy %.4f (%lld images), held-out accuracy %.4f, balanced %.4f (%lld images, "
                "concept_id %% 10 == 0)\n",
                (long long)r.steps, a.o.epochs, r.seconds, r.first_loss, r.last_loss, r.train_accuracy,
                (long long)r.train_images, r.heldout_accuracy, r.heldout_balanced_accuracy,
                (long long)r.heldout_images);
    if (!a.o.output.empty()) std::printf("saved %s\n", a.o.output.c_str());
    return 0;
}

std::vector<std::string> split_prompts(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t bar = s.find('|', start);
        const std::string p = s.substr(start, bar == std::string::npos ? std::string::npos : bar - start);
        if (!p.empty()) out.push_back(p);
        if (bar == std::string::npos) break;
        start = bar + 1;
    }
    return out;
}

void print_section(const char* name, const nlohmann::json& j) {
    std::printf("%-10s accuracy %.4f  balanced %.4f  FID %8.3f  KID %.5f  (%lld images, %.2fs/image)\n", name,
                j.value("accuracy", 0.0), j.value("balanced_accuracy", 0.0), j.value("fid", 0.0), j.value("kid", 0.0),
                (long long)j.value("images", (int64_t)0), j.value("seconds_per_image", 0.0));
}

int run_eval(EvalArgs& a) {
    set_threads(a.threads);
    a.o.precision = parse_usage_precision(a.precision);
    a.o.sheet_prompts = split_prompts(a.sheet_prompts);
    if (!a.o.sheet.empty() && a.o.sheet_prompts.empty())
        fail(ErrorCode::InvalidArgument, "usage: --sheet needs --sheet-prompts \"p1|p2|...\"");
    if (!a.o.sheet_prompts.empty() && a.o.sheet.empty())
        fail(ErrorCode::InvalidArgument, "usage: --sheet-prompts needs --sheet FILE.png");
    if (a.o.random_model && a.o.model.empty())
        fail(ErrorCode::InvalidArgument, "usage: --random-model needs -m MODEL (its architecture is re-initialised)");
    if (!a.o.sheet.empty()) check_output_path(a.o.sheet);  // before the minutes of sampling, not after
    const bool tty = !a.quiet && isatty(fileno(stderr));
    std::string phase;
    int64_t last = 0;
    a.o.on_progress = [&](const EmojiEvalProgress& p) {
        if (a.quiet) return;
        if (p.phase != phase) {
            phase = p.phase;
            last = 0;
        }
        const double eta = p.done > 0 ? p.elapsed_s / (double)p.done * (double)(p.total - p.done) : 0;
        if (tty) {
            std::fprintf(stderr, "\r%-9s %lld/%lld %.0fs ETA %.0fs ", p.phase.c_str(), (long long)p.done,
                         (long long)p.total, p.elapsed_s, eta);
            if (p.done == p.total) std::fputc('\n', stderr);
        } else if (p.done - last >= 100 || p.done == p.total) {
            last = p.done;
            std::fprintf(stderr, "%s %lld/%lld elapsed %.0fs ETA %.0fs\n", p.phase.c_str(), (long long)p.done,
                         (long long)p.total, p.elapsed_s, eta);
        }
    };
    const nlohmann::json r = evaluate_emoji(a.o);
    const nlohmann::json& real = r["real"];
    std::printf("real images: %lld; classifier accuracy: held-out %.4f (balanced %.4f), train split %.4f\n",
                (long long)r["data"]["images"].get<int64_t>(),
                real.contains("heldout") ? real["heldout"]["accuracy"].get<double>() : 0.0,
                real.contains("heldout") ? real["heldout"]["balanced_accuracy"].get<double>() : 0.0,
                real["train_split"]["accuracy"].get<double>());
    std::printf("real floor: FID %.3f  KID %.5f  (%lld sampled real vs %lld other real)\n",
                real["floor"]["fid"].get<double>(), real["floor"]["kid"].get<double>(),
                (long long)real["floor"]["images"][0].get<int64_t>(),
                (long long)real["floor"]["images"][1].get<int64_t>());
    if (real.contains("heldout_vs_rest"))
        std::printf("held-out vs rest: FID %.3f  KID %.5f\n", real["heldout_vs_rest"]["fid"].get<double>(),
                    real["heldout_vs_rest"]["kid"].get<double>());
    if (r.contains("model")) print_section("model", r["model"]);
    if (r.contains("untrained")) print_section("untrained", r["untrained"]);
    if (r.contains("sheet")) std::printf("contact sheet: %s\n", a.o.sheet.c_str());
    if (!a.json.empty()) {
        const std::string text = r.dump(2) + "\n";  // atomically: a full disk keeps the old report
        write_file_atomic(a.json, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
        std::printf("report: %s\n", a.json.c_str());
    }
    return 0;
}

}  // namespace

Runner add_eval_emoji(CLI::App& app) {
    auto t = std::make_shared<ClassifierArgs>();
    t->o.data = "data/emoji";
    CLI::App* tc = app.add_subcommand("train-classifier",
                                      "Train the emoji category classifier that eval-emoji measures with");
    tc->add_option("--data", t->o.data, "Emoji folder (manifest.jsonl with category_id, concept_id)")
        ->capture_default_str();
    tc->add_option("-o,--output", t->o.output, "Output .safetensors (weights + classes, accuracies)")->required();
    tc->add_option("--epochs", t->o.epochs, "Passes over the training split")->capture_default_str();
    tc->add_option("--batch", t->o.batch, "Batch size")->capture_default_str();
    tc->add_option("--lr", t->o.lr, "Peak learning rate (AdamW, warmup + cosine)")->capture_default_str();
    tc->add_option("--seed", t->o.seed, "Seed of the init and the data order")->capture_default_str();
    tc->add_option("--limit", t->o.limit, "Use only the first N manifest rows (0: all)")->capture_default_str();
    tc->add_option("-t,--threads", t->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
    tc->add_flag("-q,--quiet", t->quiet, "No progress output");

    auto e = std::make_shared<EvalArgs>();
    e->o.data = "data/emoji";
    CLI::App* ec = app.add_subcommand("eval-emoji",
                                      "Measure an emoji model: classifier accuracy, FID/KID vs the real images");
    ec->add_option("--classifier", e->o.classifier, "The train-classifier .safetensors")->required();
    ec->add_option("--data", e->o.data, "Emoji folder")->capture_default_str();
    ec->add_option("-m,--model", e->o.model, "Model to measure (what `nuance generate -m` loads)");
    ec->add_option("--samples", e->o.samples, "Images to generate per model")->capture_default_str();
    ec->add_option("--steps", e->o.steps, "Sampling steps")->capture_default_str();
    ec->add_option("--cfg,--cfg-scale", e->o.cfg, "Classifier-free guidance scale")->capture_default_str();
    ec->add_option("--sampler", e->o.sampler, "Sampler (see 'nuance samplers')")->capture_default_str();
    ec->add_option("--scheduler", e->o.scheduler, "Sigma schedule")->capture_default_str();
    ec->add_option("--resolution", e->o.resolution, "Generated image size")->capture_default_str();
    ec->add_option("-s,--seed", e->o.seed, "Seed of the prompt choice, the floor's sample, and image i's noise (seed + i)")
        ->capture_default_str();
    ec->add_option("--lora", e->o.loras, "LoRA merged into the model: FILE or FILE:weight (repeatable)");
    ec->add_option("--concept", e->o.concept_id,
                   "Only the prompts of this manifest concept_id (e.g. what a LoRA was trained on)");
    ec->add_flag("--random-model", e->o.random_model,
                 "Also measure the same architecture with random UNet and text-encoder weights");
    ec->add_option("--precision", e->precision, "auto | bf16 | fp32")->capture_default_str();
    ec->add_option("--json", e->json, "Write the report as JSON");
    ec->add_option("--sheet", e->o.sheet, "Write a contact sheet PNG of the model's images for --sheet-prompts");
    ec->add_option("--sheet-prompts", e->sheet_prompts, "Prompts of the contact sheet, separated by '|'");
    ec->add_option("--sheet-scale", e->o.sheet_scale, "Upscaling of the sheet's images (nearest)")->capture_default_str();
    ec->add_option("-t,--threads", e->threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
    ec->add_flag("-q,--quiet", e->quiet, "No progress output");
    return [t, e, tc] { return tc->parsed() ? run_train_classifier(*t) : run_eval(*e); };
}

}  // namespace nuance::cli
