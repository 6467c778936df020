// nuance eval-quant: each quantization type's error on the golden UNet and on a model's images (eval/quant_eval.h).
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "eval/quant_eval.h"
#include "io/atomic_file.h"
#include "io/gguf_quantize.h"
#include "models/default_model.h"

namespace nuance::cli {

namespace {

constexpr const char* kAllTypes =
    "f16,bf16,q8_0,q6_k,q5_k_m,q5_k,q5_1,q5_0,q4_k_m,q4_k,q4_1,q4_0,q3_k_m,q3_k,q2_k";

struct QuantArgs {
    QuantEvalOptions o;
    std::string types = kAllTypes, json, markdown, precision = "fp32";
    bool no_images = false, quiet = false;
    int threads = 0;
};

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t c = s.find(',', start);
        std::string t = s.substr(start, c == std::string::npos ? std::string::npos : c - start);
        if (!t.empty()) out.push_back(t);
        if (c == std::string::npos) break;
        start = c + 1;
    }
    return out;
}

void write_text(const std::string& path, const std::string& text) {
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

int run(QuantArgs& a) {
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    a.o.precision = parse_precision(a.precision);
    a.o.recipes = split_list(a.types);
    for (const std::string& r : a.o.recipes)
        if (!parse_quantize_recipe(r))
            fail(ErrorCode::InvalidArgument, "usage: --types: unknown type '", r, "' (known: ",
                 quantize_recipe_names(), ")");
    if (a.no_images) a.o.model.clear();
    else if (a.o.model.empty()) {
        a.o.model = default_model_path();
        if (a.o.model.empty())
            fail(ErrorCode::InvalidArgument, "usage: no model given and the built-in model (models/",
                 kDefaultModelName, ") was not found: pass -m MODEL or --no-images");
    }
    if (a.o.model.empty() && a.o.golden.empty())
        fail(ErrorCode::InvalidArgument, "usage: nothing to measure: give --golden DIR and/or a model");
    for (const std::string& p : {a.json, a.markdown}) {  // before the minutes of sampling, not after
        const std::filesystem::path parent = std::filesystem::path(p).parent_path();
        if (!p.empty() && !parent.empty() && !std::filesystem::is_directory(parent))
            fail(ErrorCode::NotFound, "output '", p, "': folder '", parent.string(), "' does not exist");
    }
    const bool made_work = a.o.work_dir.empty();
    if (made_work)
        a.o.work_dir = (std::filesystem::temp_directory_path() / ("nuance-eval-quant-" + std::to_string(getpid())))
                           .string();
    const bool tty = !a.quiet && isatty(fileno(stderr));
    a.o.on_progress = [&](const QuantEvalProgress& p) {
        if (a.quiet) return;
        if (tty) {
            std::fprintf(stderr, "\r%-7s %lld/%lld ", p.recipe.c_str(), (long long)p.done, (long long)p.total);
            if (p.done == p.total) std::fputc('\n', stderr);
        } else if (p.done == p.total) {
            std::fprintf(stderr, "%s: %lld images\n", p.recipe.c_str(), (long long)p.total);
        }
    };
    nlohmann::json r;
    try {
        r = evaluate_quantization(a.o);
    } catch (...) {
        if (made_work) std::filesystem::remove_all(a.o.work_dir);
        throw;
    }
    if (made_work) std::filesystem::remove_all(a.o.work_dir);
    const std::string md = quant_eval_markdown(r);
    std::printf("%s", md.c_str());
    if (r.contains("reference_accuracy"))
        std::printf("f32 images: classifier accuracy %.3f\n", r["reference_accuracy"].get<double>());
    if (!a.json.empty()) write_text(a.json, r.dump(2) + "\n");
    if (!a.markdown.empty()) write_text(a.markdown, md);
    return 0;
}

}  // namespace

Runner add_eval_quant(CLI::App& app) {
    auto a = std::make_shared<QuantArgs>();
    CLI::App* c = app.add_subcommand(
        "eval-quant", "Measure each quantization type: the golden UNet's output error and a model's images (PSNR, "
                      "SSIM, emoji-classifier agreement) against f32");
    c->add_option("-m,--model", a->o.model, "SD-family model whose UNet is quantized (default: the built-in model)");
    c->add_option("--types", a->types, "Comma-separated nuance quantize --type names")->capture_default_str();
    c->add_option("--golden", a->o.golden, "The unet_sd15 golden case folder (e.g. tests/data/golden/unet_sd15)");
    c->add_option("--classifier", a->o.classifier, "Emoji classifier (nuance train-classifier) for the agreement");
    c->add_option("--data", a->o.data, "Emoji folder: prompts from its manifest, and the classifier's accuracy");
    c->add_option("--samples", a->o.samples, "Images per type")->capture_default_str()->check(CLI::Range(1, 100000));
    c->add_option("--steps", a->o.steps, "Sampling steps")->capture_default_str()->check(CLI::Range(1, 1000));
    c->add_option("--res", a->o.resolution, "Image side (default: the model's native size)")
        ->check(CLI::Range(8, 4096));
    c->add_option("--cfg", a->o.cfg, "CFG scale")->capture_default_str();
    c->add_option("--sampler", a->o.sampler, "Sampler")->capture_default_str();
    c->add_option("--seed", a->o.seed, "Seed of image 0 (image i: seed + i)")->capture_default_str();
    c->add_option("--precision", a->precision,
                  "Products of the quantized UNet: fp32 (the weights' error alone) | bf16 | auto (what generate runs: "
                  "W8A8 int8 products for the integer block types where the CPU has VNNI); the f32 reference stays fp32")
        ->capture_default_str();
    c->add_flag("--no-images", a->no_images, "Only the golden measurement");
    c->add_option("--work", a->o.work_dir, "Folder for the quantized files (default: a temporary one, removed)");
    c->add_option("--json", a->json, "Write the report as JSON");
    c->add_option("--markdown", a->markdown, "Write the table as Markdown");
    c->add_option("-t,--threads", a->threads, "Threads (default: all cores)");
    c->add_flag("-q,--quiet", a->quiet, "No progress on stderr");
    return [=] { return run(*a); };
}

}  // namespace nuance::cli
