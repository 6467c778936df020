// nuance eval lpips DIR_A DIR_B: LPIPS v0.1 (eval/lpips.h) between the images of two folders, paired by file name.
#include <cmath>
#include <cstdio>
#include <memory>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "eval/image_folder.h"
#include "eval/lpips.h"
#include "io/atomic_file.h"
#include "io/weights.h"
#include "io/image.h"
#include "progress.h"

namespace nuance::cli {

namespace {

struct LpipsArgs {
    std::string dir_a, dir_b, net = "alex", json;
    std::vector<std::string> weights;
    int threads = 0;
    bool quiet = false;
};

// The lpips package's im2tensor: x / 127.5 - 1 in f32, [1, 3, H, W].
Tensor lpips_tensor(const Image& im) {
    Tensor t = Tensor::empty({1, 3, im.height, im.width});
    float* d = t.data<float>();
    const size_t hw = (size_t)im.width * im.height;
    for (size_t i = 0; i < hw; ++i)
        for (int c = 0; c < 3; ++c) d[(size_t)c * hw + i] = (float)im.pixels[i * im.channels + c] / 127.5f - 1.0f;
    return t;
}

int run_lpips(const LpipsArgs& a) {
    check_thread_count(a.threads, "--threads");
    if (a.threads > 0) cpu::set_num_threads(a.threads);
    const LpipsNet net = parse_lpips_net(a.net);
    if (!a.json.empty() && a.json != "-") check_report_path(a.json);
    const auto pairs = pair_images(a.dir_a, a.dir_b);
    const Lpips model = load_lpips(net, a.weights);
    ProgressBar bar(!a.quiet && isatty(fileno(stderr)));
    nlohmann::json per = nlohmann::json::array();
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < pairs.size(); ++i) {
        bar.update("lpips", (int)i, (int)pairs.size());
        const Image x = read_image(pairs[i].first, kMaxInputImagePixels);
        const Image y = read_image(pairs[i].second, kMaxInputImagePixels);
        NUANCE_CHECK(x.width == y.width && x.height == y.height, "'", pairs[i].first, "' is ", x.width, "x",
                     x.height, " but '", pairs[i].second, "' is ", y.width, "x", y.height,
                     " (LPIPS compares images of the same size)");
        const double d = model.forward(lpips_tensor(x), lpips_tensor(y)).dist.item();
        sum += d;
        lo = std::min(lo, d);
        hi = std::max(hi, d);
        per.push_back({{"file", base_name(pairs[i].first)}, {"lpips", d}});
    }
    bar.update("lpips", (int)pairs.size(), (int)pairs.size());
    bar.finish();
    const double mean = sum / (double)pairs.size();
    nlohmann::json r = {{"metric", "lpips"}, {"net", lpips_net_name(net)}, {"version", "0.1"},
                        {"dir_a", a.dir_a}, {"dir_b", a.dir_b}, {"pairs", pairs.size()},
                        {"mean", mean}, {"min", lo}, {"max", hi}, {"per_image", per}};
    if (a.json == "-") {
        std::printf("%s\n", r.dump(2).c_str());
        return 0;
    }
    std::printf("LPIPS (%s, v0.1): %.6f mean over %zu pairs (min %.6f, max %.6f)\n", lpips_net_name(net), mean,
                pairs.size(), lo, hi);
    std::printf("| LPIPS (%s) ↓ | %.4f | %zu pairs | %s vs %s |\n", lpips_net_name(net), mean, pairs.size(),
                a.dir_a.c_str(), a.dir_b.c_str());
    if (!a.json.empty()) {
        const std::string text = r.dump(2) + "\n";
        write_file_atomic(a.json, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
        std::printf("report: %s\n", a.json.c_str());
    }
    return 0;
}

}  // namespace

Runner add_eval_lpips(CLI::App& eval) {
    auto a = std::make_shared<LpipsArgs>();
    CLI::App* s = eval.add_subcommand(
        "lpips", "LPIPS v0.1 between two folders of images paired by file name (mean and per-image)");
    s->add_option("dir_a", a->dir_a, "First image folder")->required();
    s->add_option("dir_b", a->dir_b, "Second image folder (the same file names)")->required();
    s->add_option("--net", a->net, "Trunk: alex (the package default) or vgg")->capture_default_str();
    s->add_option("--weights", a->weights,
                  "Weight files, repeatable: torchvision's alexnet-owt-7be5be79.pth / vgg16-397923af.pth plus the "
                  "lpips package's alex.pth / vgg.pth, or one file with both")
        ->required();
    s->add_option("--json", a->json, "Write the result as JSON to this file ('-': print it instead of the text)");
    s->add_option("-t,--threads", a->threads, "CPU threads (0 = all cores)");
    s->add_flag("-q,--quiet", a->quiet, "No progress bar");
    return [a] { return run_lpips(*a); };
}

}  // namespace nuance::cli
