// nuance eval fid | kid | is | sweep: Inception-based image metrics (src/eval/inception_eval.h) on folders of
// images, a model's samples (-m MODEL --prompts FILE --samples N --seed S), or pytorch-fid .npz statistics.
// Every run prints a Markdown summary line on stdout; --json writes the full result, --plot a PNG.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "commands.h"
#include "core/error.h"
#include "eval/fid.h"
#include "eval/inception_eval.h"
#include "eval/plot.h"
#include "eval/stats_npz.h"
#include "io/atomic_file.h"
#include "io/weights.h"
#include "models/model_family.h"
#include "progress.h"

namespace nuance::cli {

namespace {

struct EvalArgs {
    std::vector<std::string> inputs;
    std::string inception, resize = "clean", json, save_stats, plot, precision = "fp32";
    int64_t batch = 16;
    int threads = 0;
    bool quiet = false;
    // generation (set A)
    std::string model, prompts, negative, sampler, scheduler, save_samples;
    int64_t samples = 0;
    uint64_t seed = 0;
    int steps = 0, width = 0, height = 0;
    float cfg = -1.0f;
    // metric settings
    int splits = 10, kid_subsets = 100;
    int64_t kid_subset_size = 1000;
    // sweep
    std::string steps_list, cfg_list, ref, clip_model;
};

bool is_stats_file(const std::string& p) {
    return p.size() > 4 && p.compare(p.size() - 4, 4, ".npz") == 0 && !is_directory(p);
}

struct Context {
    EvalArgs& a;
    InceptionV3 net;
    InceptionResize resize;
    std::shared_ptr<const DiffusionModel> model;
    ProgressBar bar;
    explicit Context(EvalArgs& args, bool need_logits = false)
        : a(args), resize(parse_inception_resize(args.resize)), bar(!args.quiet && isatty(fileno(stderr))) {
        if (a.threads > 0) cpu::set_num_threads(a.threads);
        NUANCE_CHECK(!a.inception.empty(), "usage: --inception FILE is required (pytorch-fid's ",
                     "pt_inception-2015-12-05-6726825d.pth or the same weights as .safetensors)");
        NUANCE_CHECK(a.batch >= 1 && a.batch <= 256, "usage: --batch must be 1..256, got ", a.batch);
        const Precision pr = parse_usage_precision(a.precision);
        net = InceptionV3::load(a.inception);
        if (pr == Precision::BF16) net.set_compute(Precision::BF16);
        if (need_logits)
            NUANCE_CHECK(net.has_fc(), "'", a.inception, "' has no fc head (fc.weight, fc.bias): the Inception ",
                         "Score needs it (pytorch-fid's pt_inception .pth has one)");
        if (!a.model.empty()) {
            NUANCE_CHECK(!a.prompts.empty(), "usage: -m MODEL needs --prompts FILE");
            NUANCE_CHECK(a.samples >= 1, "usage: -m MODEL needs --samples N (>= 1)");
            ModelLoadOptions lo;
            lo.precision = Precision::Auto;
            model = std::shared_ptr<const DiffusionModel>(load_model(a.model, lo).release());
        } else {
            NUANCE_CHECK(a.prompts.empty() && a.samples == 0, "usage: --prompts/--samples need -m MODEL");
        }
    }

    ImageSource model_source(int steps, float cfg) const {
        GenerationSpec g;
        g.prompts = read_prompt_file(a.prompts);
        g.negative_prompt = a.negative;
        g.samples = a.samples;
        g.seed = a.seed;
        g.steps = steps;
        g.cfg = cfg;
        g.width = a.width;
        g.height = a.height;
        g.sampler = a.sampler;
        g.scheduler = a.scheduler;
        g.save_dir = a.save_samples;
        return ImageSource::model(model, g);
    }

    FeatureRun features(const ImageSource& s, const std::string& label, bool logits, int keep = 0) {
        FeatureRun r = inception_features(net, s, resize, a.batch, logits, keep, [&](const FeatureProgress& p) {
            bar.update(label, (int)p.done, (int)p.total);
        });
        bar.finish();
        return r;
    }
};

void write_json(const std::string& path, const nlohmann::json& j) {
    if (path.empty()) return;
    const std::string text = j.dump(2) + "\n";
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

std::string num(double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
}

void print_markdown(const std::string& metric, const std::string& value, const std::string& a, const std::string& b,
                    const EvalArgs& args) {
    std::printf("| metric | value | set A | set B | resize |\n|---|---|---|---|---|\n| %s | %s | %s | %s | %s |\n",
                metric.c_str(), value.c_str(), a.c_str(), b.c_str(), args.resize.c_str());
}

void write_plot(const EvalArgs& a, const std::string& title, const std::vector<std::pair<std::string, std::string>>& rows,
                const std::vector<Image>& samples) {
    if (a.plot.empty()) return;
    Image panel = value_panel(title, rows);
    if (!samples.empty()) panel = beside(panel, sample_sheet(samples, {}));
    write_png(a.plot, panel);
    std::printf("plot: %s\n", a.plot.c_str());
}

constexpr int kSheetImages = 16;

// Set A: the first positional (a folder) or the model; returns the remaining positionals.
ImageSource set_a(Context& c, std::vector<std::string>& rest) {
    rest = c.a.inputs;
    if (c.model) return c.model_source(c.a.steps, c.a.cfg);
    NUANCE_CHECK(!rest.empty(), "usage: give an image folder (or -m MODEL --prompts FILE --samples N)");
    const std::string dir = rest.front();
    rest.erase(rest.begin());
    NUANCE_CHECK(!is_stats_file(dir), "usage: the first set must be images (a folder or -m MODEL), not the stats ",
                 "file '", dir, "'");
    return ImageSource::folder(dir);
}

int run_fid(EvalArgs& a) {
    if (!a.plot.empty()) check_output_path(a.plot);
    Context c(a);
    std::vector<std::string> rest;
    const ImageSource sa = set_a(c, rest);
    NUANCE_CHECK(rest.size() <= 1, "usage: nuance eval fid takes at most two sets, got ", rest.size() + 1);
    NUANCE_CHECK(!rest.empty() || !a.save_stats.empty(), "usage: nuance eval fid needs a second set (a folder or ",
                 "a .npz statistics file), or --save-stats OUT.npz");
    const FeatureRun fa = c.features(sa, "set A", false, kSheetImages);
    nlohmann::json j{{"metric", "fid"}, {"inception", a.inception}, {"resize", a.resize},
                     {"a", {{"source", sa.describe()}, {"images", sa.size()}, {"seconds", fa.seconds},
                            {"network_seconds", fa.network_seconds},
                            {"first_batch_seconds", fa.first_batch_seconds}}}};
    if (!a.save_stats.empty()) {
        NUANCE_CHECK(sa.size() >= 2, "--save-stats needs at least 2 images, got ", sa.size());
        const FeatureStats st(fa.pool3);
        write_fid_stats(a.save_stats, {2048, st.mean(), st.covariance()});
        j["a"]["stats"] = a.save_stats;
        std::printf("stats of set A (%lld images): %s\n", (long long)sa.size(), a.save_stats.c_str());
    }
    if (rest.empty()) {
        write_json(a.json, j);
        return 0;
    }
    double fid = 0;
    std::string bdesc;
    const std::string& b = rest[0];
    if (is_stats_file(b)) {
        const FidStats sb = read_fid_stats(b);
        NUANCE_CHECK(sb.dim == 2048, "stats file '", b, "' holds ", sb.dim, "-d statistics; Inception pool3 ",
                     "features are 2048-d");
        NUANCE_CHECK(sa.size() >= 2, "FID needs at least 2 images in set A, got ", sa.size());
        const FeatureStats st(fa.pool3);
        bool eps = false;
        fid = frechet_distance_cholesky(st.mean(), st.covariance(), sb.mu, sb.sigma, 2048, &eps);
        if (eps) std::fprintf(stderr, "nuance: fid calculation produces singular product; adding 1e-06 to diagonal "
                                      "of cov estimates (as pytorch-fid)\n");
        j["eps_offset"] = eps;
        bdesc = "stats " + b;
        j["b"] = {{"source", bdesc}};
    } else {
        const ImageSource sb = ImageSource::folder(b);
        const FeatureRun fb = c.features(sb, "set B", false);
        fid = frechet_distance_features(fa.pool3, fb.pool3);
        bdesc = sb.describe();
        j["b"] = {{"source", bdesc}, {"images", sb.size()}, {"seconds", fb.seconds}};
    }
    j["value"] = fid;
    print_markdown("FID", num(fid), sa.describe(), bdesc, a);
    write_json(a.json, j);
    write_plot(a, "FID " + num(fid), {{"set A", std::to_string(sa.size()) + " images"}, {"resize", a.resize}},
               fa.kept);
    return 0;
}

int run_kid(EvalArgs& a) {
    if (!a.plot.empty()) check_output_path(a.plot);
    Context c(a);
    std::vector<std::string> rest;
    const ImageSource sa = set_a(c, rest);
    NUANCE_CHECK(rest.size() == 1, "usage: nuance eval kid needs exactly two image sets, got ", rest.size() + 1);
    NUANCE_CHECK(!is_stats_file(rest[0]), "usage: KID needs images for both sets ('", rest[0], "' is a stats file: ",
                 "mu/sigma are not enough)");
    const ImageSource sb = ImageSource::folder(rest[0]);
    const FeatureRun fa = c.features(sa, "set A", false, kSheetImages);
    const FeatureRun fb = c.features(sb, "set B", false);
    NUANCE_CHECK(sa.size() >= 2 && sb.size() >= 2, "KID needs at least 2 images per set, got ", sa.size(), " and ",
                 sb.size());
    const KidEstimate k = kernel_inception_distance_subsets(fa.pool3, fb.pool3, a.kid_subsets, a.kid_subset_size, a.seed);
    nlohmann::json j{{"metric", "kid"}, {"value", k.mean}, {"std", k.std}, {"subsets", k.subsets},
                     {"subset_size", k.subset_size}, {"inception", a.inception}, {"resize", a.resize},
                     {"a", {{"source", sa.describe()}, {"images", sa.size()}}},
                     {"b", {{"source", sb.describe()}, {"images", sb.size()}}}};
    print_markdown("KID", num(k.mean) + " ± " + num(k.std), sa.describe(), sb.describe(), a);
    write_json(a.json, j);
    write_plot(a, "KID " + num(k.mean), {{"std", num(k.std)}, {"subsets", std::to_string(k.subsets)}}, fa.kept);
    return 0;
}

int run_is(EvalArgs& a) {
    if (!a.plot.empty()) check_output_path(a.plot);
    Context c(a, true);
    std::vector<std::string> rest;
    const ImageSource sa = set_a(c, rest);
    NUANCE_CHECK(rest.empty(), "usage: nuance eval is takes one image set, got ", rest.size() + 1);
    const FeatureRun fa = c.features(sa, "images", true, kSheetImages);
    const InceptionScore s = inception_score(fa.logits, a.splits);
    nlohmann::json j{{"metric", "is"}, {"value", s.mean}, {"std", std::isfinite(s.std) ? nlohmann::json(s.std) : nullptr},
                     {"splits", s.splits}, {"inception", a.inception}, {"resize", a.resize},
                     {"a", {{"source", sa.describe()}, {"images", sa.size()}}}};
    print_markdown("IS", num(s.mean) + " ± " + num(s.std), sa.describe(), "-", a);
    write_json(a.json, j);
    write_plot(a, "IS " + num(s.mean), {{"std", num(s.std)}, {"splits", std::to_string(s.splits)}}, fa.kept);
    return 0;
}

template <class T>
std::vector<T> parse_list(const std::string& s, const char* flag) {
    std::vector<T> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        const std::string item = s.substr(start, end - start);
        size_t used = 0;
        double v = 0;
        try {
            v = std::stod(item, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        NUANCE_CHECK(!item.empty() && used == item.size() && std::isfinite(v), "usage: ", flag, " '", s,
                     "': '", item, "' is not a number");
        out.push_back((T)v);
        NUANCE_CHECK(out.size() <= 64, "usage: ", flag, " lists more than 64 values");
        start = end + 1;
    }
    return out;
}

int run_sweep(EvalArgs& a) {
    NUANCE_CHECK(!a.model.empty(), "usage: nuance eval sweep needs -m MODEL --prompts FILE --samples N");
    NUANCE_CHECK(!a.ref.empty(), "usage: nuance eval sweep needs --ref (a folder or .npz statistics) to measure FID ",
                 "against");
    NUANCE_CHECK(a.inputs.empty(), "usage: nuance eval sweep takes no positional sets (use --ref)");
    if (!a.plot.empty()) check_output_path(a.plot);
    const std::vector<int> steps = a.steps_list.empty() ? std::vector<int>{a.steps} : parse_list<int>(a.steps_list, "--steps");
    const std::vector<float> cfgs = a.cfg_list.empty() ? std::vector<float>{a.cfg} : parse_list<float>(a.cfg_list, "--cfg");
    if (!a.steps_list.empty())
        for (int s : steps) NUANCE_CHECK(s >= 1 && s <= 1000, "usage: --steps ", s, " outside 1..1000");
    NUANCE_CHECK(a.clip_model.empty(), "usage: --clip (CLIP score in the sweep) is not available yet: it needs ",
                 "clip_score() from `nuance eval clip-score`");
    Context c(a);
    // The reference: statistics.
    std::vector<double> rmu, rsigma;
    if (is_stats_file(a.ref)) {
        FidStats r = read_fid_stats(a.ref);
        NUANCE_CHECK(r.dim == 2048, "stats file '", a.ref, "' holds ", r.dim, "-d statistics; need 2048-d");
        rmu = std::move(r.mu);
        rsigma = std::move(r.sigma);
    } else {
        const FeatureRun fr = c.features(ImageSource::folder(a.ref), "reference", false);
        NUANCE_CHECK(fr.pool3.size(0) >= 2, "--ref needs at least 2 images");
        const FeatureStats st(fr.pool3);
        rmu = st.mean();
        rsigma = st.covariance();
    }
    nlohmann::json runs = nlohmann::json::array();
    std::vector<ChartSeries> series;
    std::vector<Image> sheet;
    std::vector<std::string> captions;
    std::printf("| steps | cfg | FID | samples |\n|---|---|---|---|\n");
    for (float cfg : cfgs) {
        ChartSeries cs;
        cs.label = "cfg " + num(cfg);
        for (int st : steps) {
            const ImageSource src = c.model_source(st, cfg);
            const FeatureRun fr = c.features(src, "steps " + std::to_string(st) + " cfg " + num(cfg), false, 1);
            NUANCE_CHECK(src.size() >= 2, "FID needs at least 2 samples, got ", src.size());
            const FeatureStats fs(fr.pool3);
            const double fid = frechet_distance_cholesky(fs.mean(), fs.covariance(), rmu, rsigma, 2048);
            std::printf("| %d | %s | %s | %lld |\n", st, num(cfg).c_str(), num(fid).c_str(), (long long)src.size());
            std::fflush(stdout);
            runs.push_back({{"steps", st}, {"cfg", cfg}, {"fid", fid}, {"samples", src.size()},
                            {"seconds", fr.seconds}, {"clip_score", nullptr}});
            cs.x.push_back(st);
            cs.y.push_back(fid);
            if (!fr.kept.empty()) {
                sheet.push_back(fr.kept[0]);
                captions.push_back("steps " + std::to_string(st) + " cfg " + num(cfg));
            }
        }
        series.push_back(cs);
    }
    write_json(a.json, {{"metric", "sweep"}, {"model", a.model}, {"ref", a.ref}, {"inception", a.inception},
                        {"resize", a.resize}, {"runs", runs}});
    if (!a.plot.empty()) {
        ChartSpec spec;
        spec.title = "FID vs steps";
        spec.x_label = "steps";
        spec.y_label = "FID";
        spec.series = series;
        write_png(a.plot, beside(line_chart(spec), sample_sheet(sheet, captions, 128, 16)));
        std::printf("plot: %s\n", a.plot.c_str());
    }
    return 0;
}

void add_common(CLI::App* s, EvalArgs& a, bool positional = true) {
    if (positional) s->add_option("sets", a.inputs, "Image folders (and for fid: a pytorch-fid .npz as the second)");
    s->add_option("--inception", a.inception, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or .safetensors)");
    s->add_option("--resize", a.resize, "clean (clean-fid) | legacy_pytorch (pytorch-fid) | legacy_tensorflow")
        ->capture_default_str();
    s->add_option("--batch", a.batch, "Images per network call")->capture_default_str();
    s->add_option("--precision", a.precision, "Inception convolutions: fp32 | bf16")->capture_default_str();
    s->add_option("--json", a.json, "Write the result as JSON");
    s->add_option("--plot", a.plot, "Write a PNG: the numbers beside a contact sheet of the samples");
    s->add_option("-m,--model", a.model, "Generate set A with this model (what `nuance generate -m` loads)");
    s->add_option("--prompts", a.prompts, "Prompt file for -m: one per line, image i uses line i mod count");
    s->add_option("--samples", a.samples, "Images to generate with -m");
    s->add_option("-s,--seed", a.seed, "Seed of image 0 (image i: seed + i); also KID's subset draw")
        ->capture_default_str();
    if (positional) {
        s->add_option("--steps", a.steps, "Sampling steps (default: the model's)");
        s->add_option("--cfg,--cfg-scale", a.cfg, "Guidance scale (default: the model's)");
    }
    s->add_option("--negative-prompt", a.negative, "Negative prompt for -m");
    s->add_option("-W,--width", a.width, "Generated width (default: the model's)");
    s->add_option("-H,--height", a.height, "Generated height (default: the model's)");
    s->add_option("--sampler", a.sampler, "Sampler (default: the model's)");
    s->add_option("--scheduler", a.scheduler, "Sigma schedule");
    s->add_option("--save-samples", a.save_samples, "Also write the generated images to this folder");
    s->add_option("-t,--threads", a.threads, "CPU threads (default: OMP_NUM_THREADS or all cores)");
    s->add_flag("-q,--quiet", a.quiet, "No progress bar");
}

}  // namespace

Runner add_eval_fid(CLI::App& eval) {
    auto a = std::make_shared<EvalArgs>();
    CLI::App* fid = eval.add_subcommand("fid", "Fréchet Inception Distance between two image sets (or vs a .npz)");
    add_common(fid, *a);
    fid->add_option("--save-stats", a->save_stats, "Write set A's statistics as a pytorch-fid .npz (mu, sigma)");
    CLI::App* kid = eval.add_subcommand("kid", "Kernel Inception Distance (clean-fid: 100 subsets of <= 1000)");
    add_common(kid, *a);
    kid->add_option("--subsets", a->kid_subsets, "Subsets")->capture_default_str();
    kid->add_option("--subset-size", a->kid_subset_size, "Rows per subset (capped at the smaller set)")
        ->capture_default_str();
    CLI::App* is = eval.add_subcommand("is", "Inception Score (torchmetrics' definition; needs the fc head)");
    add_common(is, *a);
    is->add_option("--splits", a->splits, "Splits")->capture_default_str();
    CLI::App* sweep = eval.add_subcommand("sweep", "FID (vs --ref) of a model over --steps x --cfg, plotted");
    add_common(sweep, *a, false);
    sweep->add_option("--steps", a->steps_list, "Steps to try, comma-separated (e.g. 10,20,30)");
    sweep->add_option("--cfg,--cfg-scale", a->cfg_list, "Guidance scales to try, comma-separated (e.g. 3,5,7)");
    sweep->add_option("--ref", a->ref, "Reference: an image folder or a pytorch-fid .npz")->required();
    sweep->add_option("--clip", a->clip_model, "CLIP model for the CLIP score per setting (not available yet)");
    return [a, fid, kid, is] {
        if (fid->parsed()) return run_fid(*a);
        if (kid->parsed()) return run_kid(*a);
        if (is->parsed()) return run_is(*a);
        return run_sweep(*a);
    };
}

}  // namespace nuance::cli
