// nuance eval pr REAL FAKE: improved precision/recall (+ density/coverage) of two sets (eval/precision_recall.h). A set
// is a .npy feature matrix [N, D] or a folder of images, whose features the feature network computes (Inception pool3
// by default: --inception FILE; or --features emoji-classifier:FILE). Under mpirun each folder's images are split
// across the ranks; rank 0 gathers the features and reports.
#include <cstdio>
#include <memory>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "dist/comm.h"
#include "eval/feature_extractor.h"
#include "eval/image_folder.h"
#include "eval/precision_recall.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "io/weights.h"
#include "progress.h"

namespace nuance::cli {

namespace {

struct PrArgs {
    std::string real, fake, inception, features, resize = "clean", precision = "fp32", json;
    int64_t k = 3, batch = 16;
    int threads = 0;
    bool quiet = false;
};

Tensor read_feature_file(const std::string& path) {
    const Tensor t = read_npy(path);
    NUANCE_CHECK(t.dim() == 2, "feature file '", path, "' must hold an [N, D] matrix, got ", t.str());
    return t;
}

int run_pr(const PrArgs& a) {
    check_thread_count(a.threads, "--threads");
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    if (!a.json.empty() && a.json != "-") check_report_path(a.json);
    NUANCE_CHECK(a.k >= 1 && a.k <= 1000, "usage: -k must be 1..1000, got ", a.k);
    const bool real_dir = is_directory(a.real), fake_dir = is_directory(a.fake);
    std::unique_ptr<FeatureExtractor> net;
    if (real_dir || fake_dir) {
        net = make_feature_extractor(a.features, a.inception, a.resize, parse_usage_precision(a.precision));
    } else {
        NUANCE_CHECK(a.inception.empty() && a.features.empty(), "usage: --inception/--features compute features of ",
                     "image folders; '", a.real, "' and '", a.fake, "' are both feature files");
    }
    ProgressBar bar(!a.quiet && dist::is_root() && isatty(fileno(stderr)));
    // Folders are listed and files read before any feature is computed: a typo fails in a second.
    const std::unique_ptr<ImageSource> rs = real_dir ? std::make_unique<ImageSource>(ImageSource::folder(a.real)) : nullptr;
    const std::unique_ptr<ImageSource> fs = fake_dir ? std::make_unique<ImageSource>(ImageSource::folder(a.fake)) : nullptr;
    Tensor real = real_dir ? Tensor() : read_feature_file(a.real), fake = fake_dir ? Tensor() : read_feature_file(a.fake);
    auto features = [&](const ImageSource& s, const char* label) {
        FeatureRun r = extract_features(*net, s, a.batch, false, 0,
                                        [&](const FeatureProgress& p) { bar.update(label, (int)p.done, (int)p.total); });
        bar.finish();
        return r;
    };
    bool complete = true;
    if (rs) {
        FeatureRun r = features(*rs, "real");
        real = r.features;
        complete = r.complete;
    }
    if (fs) {
        FeatureRun r = features(*fs, "fake");
        fake = r.features;
        complete = r.complete;
    }
    if (!complete) return 0;
    const PrecisionRecall r = precision_recall(real, fake, a.k);
    nlohmann::json j = {{"metric", "precision_recall"}, {"definition", "Kynkaanniemi et al. 2019, k-NN manifolds"},
                        {"k", r.k}, {"real", a.real}, {"fake", a.fake}, {"n_real", r.n_real}, {"n_fake", r.n_fake},
                        {"precision", r.precision}, {"recall", r.recall}, {"density", r.density},
                        {"coverage", r.coverage}};
    if (net) {
        j["features"] = a.features.empty() ? "inception" : a.features;
        j["network"] = net->name();
        j["dim"] = net->dim();
    }
    if (a.json == "-") {
        std::printf("%s\n", j.dump(2).c_str());
        return 0;
    }
    std::printf("precision %.4f  recall %.4f  density %.4f  coverage %.4f  (k=%lld, %lld real, %lld fake)\n",
                r.precision, r.recall, r.density, r.coverage, (long long)r.k, (long long)r.n_real,
                (long long)r.n_fake);
    std::printf("| precision ↑ | recall ↑ | %.4f | %.4f | k=%lld, %lld real / %lld fake |\n", r.precision, r.recall,
                (long long)r.k, (long long)r.n_real, (long long)r.n_fake);
    if (!a.json.empty()) {
        const std::string text = j.dump(2) + "\n";
        write_file_atomic(a.json, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
        std::printf("report: %s\n", a.json.c_str());
    }
    return 0;
}

}  // namespace

Runner add_eval_pr(CLI::App& eval) {
    auto a = std::make_shared<PrArgs>();
    CLI::App* s = eval.add_subcommand("pr", "Improved precision/recall (Kynkaanniemi et al. 2019) plus density and "
                                            "coverage of fake vs real (feature files or image folders)");
    s->add_option("real", a->real, "Real set: .npy features [N, D] (e.g. Inception pool3) or an image folder")
        ->required();
    s->add_option("fake", a->fake, "Fake (generated) set: .npy features [M, D] or an image folder")->required();
    s->add_option("-k,--k", a->k, "Neighbourhood size")->capture_default_str();
    s->add_option("--inception", a->inception, "For folders: pytorch-fid's pt_inception .pth (or .safetensors)");
    s->add_option("--features", a->features, "For folders: inception (default) | emoji-classifier:FILE");
    s->add_option("--resize", a->resize, "For folders: clean | legacy_pytorch | legacy_tensorflow")
        ->capture_default_str();
    s->add_option("--batch", a->batch, "Images per network call")->capture_default_str();
    s->add_option("--precision", a->precision, "Inception convolutions: fp32 | bf16")->capture_default_str();
    s->add_option("--json", a->json, "Write the result as JSON to this file ('-': print it instead of the text)");
    s->add_option("-t,--threads", a->threads, "CPU threads (0 = all cores)");
    s->add_flag("-q,--quiet", a->quiet, "No progress bar");
    return [a] { return run_pr(*a); };
}

}  // namespace nuance::cli
