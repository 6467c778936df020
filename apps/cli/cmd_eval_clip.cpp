// nuance eval clip-score: CLIP score (eval/clip_score.h, torchmetrics' definition) of a folder of images against their
// prompts (a prompt file, or the "parameters" text nuance/A1111 write into each PNG), or of a model's samples against
// the prompts they were made from (-m MODEL --prompts FILE --samples N). Under mpirun the images are split across the
// ranks (same seeds and files as one process); rank 0 gathers the scores and reports.
#include <cstdio>
#include <memory>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "eval/clip_score.h"
#include "eval/feature_extractor.h"
#include "eval/image_folder.h"
#include "eval_common.h"
#include "io/atomic_file.h"
#include "io/weights.h"
#include "progress.h"

namespace nuance::cli {

namespace {

struct ClipArgs {
    std::string dir, prompts, clip, config, processor, json;
    GenArgs g;
    bool captions_from_png = false;
    int threads = 0, batch = 8;
    bool quiet = false;
};

int run_clip(ClipArgs& a) {
    check_thread_count(a.threads, "--threads");
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    const bool generated = !a.g.model.empty();
    if (generated) {
        NUANCE_CHECK(a.dir.empty(), "usage: clip-score takes a folder or -m MODEL, not both");
        NUANCE_CHECK(!a.captions_from_png, "usage: --captions-from-png reads folders; with -m the captions are the ",
                     "--prompts the images were made from");
        a.g.prompts = a.prompts;  // --prompts: the captions of a folder, the prompts of -m
    } else {
        NUANCE_CHECK(!a.dir.empty(), "usage: clip-score needs an image folder, or -m MODEL --prompts FILE --samples N");
        NUANCE_CHECK(a.g.samples == 0, "usage: --samples needs -m MODEL");
        if (a.prompts.empty() == !a.captions_from_png)
            fail(ErrorCode::InvalidArgument,
                 "usage: clip-score needs exactly one of --prompts FILE and --captions-from-png");
    }
    if (a.batch < 1 || a.batch > 256)
        fail(ErrorCode::InvalidArgument, "usage: --batch ", a.batch, " must be in 1..256");
    if (!a.json.empty() && a.json != "-") check_report_path(a.json);
    std::vector<std::string> files, captions;
    std::unique_ptr<ImageSource> src;
    const auto model = load_generation_model(a.g);
    if (generated) {
        src = std::make_unique<ImageSource>(generation_source(a.g, model, a.g.steps, a.g.cfg));
        for (int64_t i = 0; i < src->size(); ++i) captions.push_back(src->prompt(i));
    } else {
        files = list_images(a.dir);
        src = std::make_unique<ImageSource>(ImageSource::folder(a.dir));
        NUANCE_CHECK((size_t)src->size() == files.size(), "clip-score: '", a.dir, "' changed while it was listed");
        if (a.captions_from_png) {
            for (const auto& p : files) captions.push_back(caption_from_png(p));
        } else {
            captions = read_prompt_lines(a.prompts);
            if (captions.size() == 1 && files.size() > 1) captions.resize(files.size(), captions[0]);
            NUANCE_CHECK(captions.size() == files.size(), "prompt file '", a.prompts, "' has ", captions.size(),
                         " prompts for the ", files.size(), " images of '", a.dir,
                         "' (one prompt per image, in file-name order, or one prompt for all)");
        }
    }
    const auto scorer = load_clip_scorer(a.clip, a.config, a.processor);
    const int64_t n = src->size();
    ProgressBar bar(!a.quiet && dist::is_root() && isatty(fileno(stderr)));
    const ShardRange mine = my_shard(n);
    std::vector<double> my_scores;
    for_each_batch(*src, a.batch, [&](const std::vector<Image>& ims, int64_t first) {
        const std::vector<std::string> caps(captions.begin() + first, captions.begin() + first + (int64_t)ims.size());
        const std::vector<double> s = scorer->pair_scores(ims, caps);
        my_scores.insert(my_scores.end(), s.begin(), s.end());
        bar.update("clip-score", (int)(first + (int64_t)ims.size() - mine.begin), (int)(mine.end - mine.begin));
    }, "clip-score");
    bar.finish();
    const std::vector<double> scores = gather_doubles(my_scores);
    if (!dist::is_root()) return 0;
    NUANCE_CHECK((int64_t)scores.size() == n, "clip-score: gathered ", scores.size(), " scores for ", n, " images");
    const double score = clip_score_of(scores);
    nlohmann::json per = nlohmann::json::array();
    for (int64_t i = 0; i < n; ++i) {
        nlohmann::json e{{"caption", captions[(size_t)i]}, {"clip_score", scores[(size_t)i]}};
        if (generated) {
            e["index"] = i;
            e["seed"] = a.g.seed + (uint64_t)i;
        } else {
            e["file"] = base_name(files[(size_t)i]);
        }
        per.push_back(e);
    }
    const std::string where = generated ? src->describe() : a.dir;
    nlohmann::json r = {{"metric", "clip_score"}, {"definition", "torchmetrics: max(mean(100 * cos), 0)"},
                        {"source", where}, {"clip", a.clip}, {"images", n}, {"clip_score", score},
                        {"ranks", dist::size()}, {"per_image", per}};
    if (!generated) r["dir"] = a.dir;
    if (a.json == "-") {
        std::printf("%s\n", r.dump(2).c_str());
        return 0;
    }
    std::printf("CLIP score: %.4f over %lld images (%s)\n", score, (long long)n, base_name(a.clip).c_str());
    std::printf("| CLIP score ↑ | %.2f | %lld images | %s |\n", score, (long long)n, where.c_str());
    if (!a.json.empty()) {
        const std::string text = r.dump(2) + "\n";
        write_file_atomic(a.json, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
        std::printf("report: %s\n", a.json.c_str());
    }
    return 0;
}

}  // namespace

Runner add_eval_clip(CLI::App& eval) {
    auto a = std::make_shared<ClipArgs>();
    CLI::App* s = eval.add_subcommand("clip-score", "CLIP score (torchmetrics' definition) of a folder of images "
                                                    "against their prompts, or of a model's samples (-m)");
    s->add_option("dir", a->dir, "Image folder (images are taken in file-name order)");
    s->add_option("--prompts", a->prompts, "Prompt file: one prompt per line, per image in file-name order (or one "
                                           "for all); with -m the prompts to generate from (image i: line i mod count)");
    s->add_flag("--captions-from-png", a->captions_from_png,
                "Take each image's prompt from its PNG \"parameters\" text (nuance / A1111 infotext)");
    s->add_option("--clip", a->clip, "CLIPModel weights (e.g. openai/clip-vit-large-patch14's model.safetensors) or "
                                     "its transformers folder")
        ->required();
    s->add_option("--clip-config", a->config, "transformers config.json of the CLIP model (heads, activation)");
    s->add_option("--processor", a->processor, "preprocessor_config.json (default: resize/crop to the model's size, "
                                               "CLIP mean/std)");
    s->add_option("--batch", a->batch, "Images per forward pass")->capture_default_str();
    s->add_option("--json", a->json, "Write the result as JSON to this file ('-': print it instead of the text)");
    s->add_option("-t,--threads", a->threads, "CPU threads (0 = all cores)");
    s->add_flag("-q,--quiet", a->quiet, "No progress bar");
    // -m and its sampling flags; --prompts above serves both modes.
    s->add_option("-m,--model", a->g.model, "Generate the images with this model, then score them against their "
                                            "prompts (needs --prompts and --samples)");
    s->add_option("--samples", a->g.samples, "Images to generate with -m");
    s->add_option("-s,--seed", a->g.seed, "Seed of image 0 (image i: seed + i)")->capture_default_str();
    s->add_option("--steps", a->g.steps, "Sampling steps (default: the model's)");
    s->add_option("--cfg,--cfg-scale", a->g.cfg, "Guidance scale (default: the model's)");
    s->add_option("--negative-prompt", a->g.negative, "Negative prompt for -m");
    s->add_option("-W,--width", a->g.width, "Generated width (default: the model's)");
    s->add_option("-H,--height", a->g.height, "Generated height (default: the model's)");
    s->add_option("--sampler", a->g.sampler, "Sampler (default: the model's)");
    s->add_option("--scheduler", a->g.scheduler, "Sigma schedule");
    s->add_option("--save-samples", a->g.save_samples, "Also write the generated images to this folder (%06d.png)");
    return [a] { return run_clip(*a); };
}

}  // namespace nuance::cli
