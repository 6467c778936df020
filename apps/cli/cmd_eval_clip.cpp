// nuance eval clip-score DIR: CLIP score (eval/clip_score.h, torchmetrics' definition) of a folder of images against
// their prompts (a prompt file, or the "parameters" text nuance/A1111 write into each PNG).
#include <cstdio>
#include <memory>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "eval/clip_score.h"
#include "eval/image_folder.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "progress.h"

namespace nuance::cli {

namespace {

struct ClipArgs {
    std::string dir, prompts, clip, config, processor, json;
    bool captions_from_png = false;
    int threads = 0, batch = 8;
    bool quiet = false;
};

int run_clip(const ClipArgs& a) {
    check_thread_count(a.threads, "--threads");
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    if (a.prompts.empty() == !a.captions_from_png)
        fail(ErrorCode::InvalidArgument, "usage: clip-score needs exactly one of --prompts FILE and --captions-from-png");
    if (a.batch < 1 || a.batch > 256)
        fail(ErrorCode::InvalidArgument, "usage: --batch ", a.batch, " must be in 1..256");
    if (!a.json.empty() && a.json != "-") check_report_path(a.json);
    // --clip: a weight file, or a transformers folder (model.safetensors + config.json + preprocessor_config.json)
    std::string weights = a.clip, config = a.config, processor = a.processor;
    if (is_directory(a.clip)) {
        weights = find_first_file(a.clip, {"model.safetensors", "pytorch_model.bin"});
        NUANCE_CHECK_CODE(!weights.empty(), NotFound, "CLIP folder '", a.clip, "' has no model.safetensors");
        if (config.empty() && file_exists(a.clip + "/config.json")) config = a.clip + "/config.json";
        if (processor.empty() && file_exists(a.clip + "/preprocessor_config.json"))
            processor = a.clip + "/preprocessor_config.json";
    }
    const std::vector<std::string> images = list_images(a.dir);
    std::vector<std::string> captions;
    if (a.captions_from_png) {
        for (const auto& p : images) captions.push_back(caption_from_png(p));
    } else {
        captions = read_prompt_lines(a.prompts);
        if (captions.size() == 1 && images.size() > 1) captions.resize(images.size(), captions[0]);
        NUANCE_CHECK(captions.size() == images.size(), "prompt file '", a.prompts, "' has ", captions.size(),
                     " prompts for the ", images.size(), " images of '", a.dir,
                     "' (one prompt per image, in file-name order, or one prompt for all)");
    }
    const auto scorer = ClipScorer::load(weights, config.empty() ? nlohmann::json() : read_json_object(config),
                                         processor.empty() ? nlohmann::json() : read_json_object(processor));
    ProgressBar bar(!a.quiet && isatty(fileno(stderr)));
    std::vector<double> scores;
    for (size_t i = 0; i < images.size(); i += (size_t)a.batch) {
        bar.update("clip-score", (int)i, (int)images.size());
        const size_t n = std::min(images.size() - i, (size_t)a.batch);
        std::vector<Image> ims;
        for (size_t j = 0; j < n; ++j) ims.push_back(read_image(images[i + j], kMaxInputImagePixels));
        const std::vector<std::string> caps(captions.begin() + (long)i, captions.begin() + (long)(i + n));
        const std::vector<double> s = clip_pair_scores(scorer->image_embeds(ims), scorer->text_embeds(caps));
        scores.insert(scores.end(), s.begin(), s.end());
    }
    bar.update("clip-score", (int)images.size(), (int)images.size());
    bar.finish();
    const double score = clip_score_of(scores);
    nlohmann::json per = nlohmann::json::array();
    for (size_t i = 0; i < images.size(); ++i)
        per.push_back({{"file", base_name(images[i])}, {"caption", captions[i]}, {"clip_score", scores[i]}});
    nlohmann::json r = {{"metric", "clip_score"}, {"definition", "torchmetrics: max(mean(100 * cos), 0)"},
                        {"dir", a.dir}, {"clip", a.clip}, {"images", images.size()}, {"clip_score", score},
                        {"per_image", per}};
    if (a.json == "-") {
        std::printf("%s\n", r.dump(2).c_str());
        return 0;
    }
    std::printf("CLIP score: %.4f over %zu images (%s)\n", score, images.size(), base_name(weights).c_str());
    std::printf("| CLIP score ↑ | %.2f | %zu images | %s |\n", score, images.size(), a.dir.c_str());
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
                                                    "against their prompts");
    s->add_option("dir", a->dir, "Image folder (images are taken in file-name order)")->required();
    s->add_option("--prompts", a->prompts, "Prompt file: one prompt per line, per image in file-name order (or one "
                                           "for all)");
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
    return [a] { return run_clip(*a); };
}

}  // namespace nuance::cli
