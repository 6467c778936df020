// nuance eval pr REAL FAKE: improved precision/recall (+ density/coverage) of two feature sets (eval/precision_recall.h).
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "eval/image_folder.h"
#include "eval/precision_recall.h"
#include "io/atomic_file.h"
#include "io/npy.h"
#include "io/weights.h"

namespace nuance::cli {

namespace {

struct PrArgs {
    std::string real, fake, inception, json;
    int64_t k = 3;
    int threads = 0;
};

Tensor features_of(const std::string& path, const PrArgs& a) {
    if (is_directory(path))
        fail(ErrorCode::Unsupported, "'", path, "' is a folder: computing Inception features from images is not "
                                                "available in this build yet; pass .npy feature files [N, D] instead");
    const Tensor t = read_npy(path);
    NUANCE_CHECK(t.dim() == 2, "feature file '", path, "' must hold an [N, D] matrix, got ", t.str());
    return t;
}

int run_pr(const PrArgs& a) {
    check_thread_count(a.threads, "--threads");
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    if (!a.json.empty() && a.json != "-") check_report_path(a.json);
    const Tensor real = features_of(a.real, a), fake = features_of(a.fake, a);
    const PrecisionRecall r = precision_recall(real, fake, a.k);
    nlohmann::json j = {{"metric", "precision_recall"}, {"definition", "Kynkaanniemi et al. 2019, k-NN manifolds"},
                        {"k", r.k}, {"real", a.real}, {"fake", a.fake}, {"n_real", r.n_real}, {"n_fake", r.n_fake},
                        {"precision", r.precision}, {"recall", r.recall}, {"density", r.density},
                        {"coverage", r.coverage}};
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
                                            "coverage of fake vs real features");
    s->add_option("real", a->real, "Real features: .npy [N, D] (e.g. Inception pool3)")->required();
    s->add_option("fake", a->fake, "Fake (generated) features: .npy [M, D]")->required();
    s->add_option("-k,--k", a->k, "Neighbourhood size")->capture_default_str();
    s->add_option("--json", a->json, "Write the result as JSON to this file ('-': print it instead of the text)");
    s->add_option("-t,--threads", a->threads, "CPU threads (0 = all cores)");
    return [a] { return run_pr(*a); };
}

}  // namespace nuance::cli
