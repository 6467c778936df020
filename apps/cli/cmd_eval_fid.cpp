// nuance eval fid | kid | is | sweep: feature-based image metrics (Inception by default, or --features
// emoji-classifier:FILE; src/eval/feature_extractor.h) on folders of images, a model's samples (-m MODEL --prompts
// FILE --samples N --seed S), or pytorch-fid .npz statistics. Every run prints a Markdown summary line on stdout;
// --json writes the full result, --plot a PNG. Under mpirun the images of every set are split across the ranks
// (same seeds, same --save-samples files as one process); rank 0 gathers the features, computes and reports.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "backends/cpu/dnnl_context.h"
#include "dist/comm.h"
#include "eval/feature_extractor.h"
#include "commands.h"
#include "eval_common.h"
#include "core/error.h"
#include "eval/clip_score.h"
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
    std::string inception, features, resize = "clean", json, save_stats, plot, precision = "fp32";
    int64_t batch = 16;
    int threads = 0;
    bool quiet = false;
    GenArgs g;  // generation (set A)
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
    std::unique_ptr<FeatureExtractor> net;
    std::shared_ptr<const DiffusionModel> model;
    ProgressBar bar;
    explicit Context(EvalArgs& args, bool need_logits = false)
        : a(args), bar(!args.quiet && dist::is_root() && isatty(fileno(stderr))) {
        if (a.threads > 0) cpu::set_num_threads(a.threads);
        parse_inception_resize(a.resize);  // a usage error before the network loads
        NUANCE_CHECK(a.batch >= 1 && a.batch <= 256, "usage: --batch must be 1..256, got ", a.batch);
        const Precision pr = parse_usage_precision(a.precision);
        net = make_feature_extractor(a.features, a.inception, a.resize, pr);
        if (need_logits)
            NUANCE_CHECK(net->num_logits() > 0, "'", a.features.empty() ? a.inception : a.features,
                         "' has no fc head (fc.weight, fc.bias): the Inception Score needs it (pytorch-fid's ",
                         "pt_inception .pth has one)");
        model = load_generation_model(a.g);
    }

    ImageSource model_source(int steps, float cfg) const { return generation_source(a.g, model, steps, cfg); }

    FeatureRun features(const ImageSource& s, const std::string& label, bool logits, int keep = 0) {
        FeatureRun r = extract_features(*net, s, a.batch, logits, keep, [&](const FeatureProgress& p) {
            bar.update(label, (int)p.done, (int)p.total);
        });
        bar.finish();
        return r;
    }
    std::string features_name() const { return a.features.empty() ? "inception" : a.features; }
    nlohmann::json describe() const {
        return {{"features", features_name()}, {"network", net->name()}, {"dim", net->dim()},
                {"inception", a.features.empty() ? nlohmann::json(a.inception) : nlohmann::json(nullptr)},
                {"resize", a.resize}, {"ranks", dist::size()}};
    }
};

void write_json(const std::string& path, const nlohmann::json& j) {
    if (path.empty() || !dist::is_root()) return;
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
    if (c.model) return c.model_source(c.a.g.steps, c.a.g.cfg);
    NUANCE_CHECK(!rest.empty(), "usage: give an image folder (or -m MODEL --prompts FILE --samples N)");
    const std::string dir = rest.front();
    rest.erase(rest.begin());
    NUANCE_CHECK(!is_stats_file(dir), "usage: the first set must be images (a folder or -m MODEL), not the stats ",
                 "file '", dir, "'");
    return ImageSource::folder(dir);
}

// A pytorch-fid .npz of `dim`-d statistics (read before any image is made: a wrong file fails in seconds).
FidStats read_stats_for(const std::string& path, int64_t dim, const std::string& what) {
    FidStats st = read_fid_stats(path);
    NUANCE_CHECK(st.dim == dim, what, " '", path, "' holds ", st.dim, "-d statistics; the feature network's ",
                 "features are ", dim, "-d");
    return st;
}

int run_fid(EvalArgs& a) {
    if (!a.plot.empty()) check_output_path(a.plot);
    Context c(a);
    std::vector<std::string> rest;
    const ImageSource sa = set_a(c, rest);
    NUANCE_CHECK(rest.size() <= 1, "usage: nuance eval fid takes at most two sets, got ", rest.size() + 1);
    NUANCE_CHECK(!rest.empty() || !a.save_stats.empty(), "usage: nuance eval fid needs a second set (a folder or ",
                 "a .npz statistics file), or --save-stats OUT.npz");
    const int64_t dim = c.net->dim();
    NUANCE_CHECK(a.save_stats.empty() || sa.size() >= 2, "--save-stats needs at least 2 images, got ", sa.size());
    const bool b_stats = !rest.empty() && is_stats_file(rest[0]);
    FidStats sb_stats;
    std::unique_ptr<ImageSource> sb;
    if (b_stats) {
        sb_stats = read_stats_for(rest[0], dim, "stats file");
        NUANCE_CHECK(sa.size() >= 2, "FID needs at least 2 images in set A, got ", sa.size());
    } else if (!rest.empty()) {
        sb = std::make_unique<ImageSource>(ImageSource::folder(rest[0]));
    }
    // Every rank takes part in both feature runs; only rank 0 holds the rows afterwards.
    const FeatureRun fa = c.features(sa, "set A", false, kSheetImages);
    FeatureRun fb;
    if (sb) fb = c.features(*sb, "set B", false);
    if (!fa.complete) return 0;
    nlohmann::json j = c.describe();
    j["metric"] = "fid";
    j["a"] = {{"source", sa.describe()}, {"images", sa.size()}, {"seconds", fa.seconds},
              {"network_seconds", fa.network_seconds}, {"first_batch_seconds", fa.first_batch_seconds},
              {"network_cpu_seconds", fa.network_cpu_seconds}, {"first_batch_cpu_seconds", fa.first_batch_cpu_seconds}};
    if (!a.save_stats.empty()) {
        const FeatureStats st(fa.features);
        write_fid_stats(a.save_stats, {dim, st.mean(), st.covariance()});
        j["a"]["stats"] = a.save_stats;
        std::printf("stats of set A (%lld images): %s\n", (long long)sa.size(), a.save_stats.c_str());
    }
    if (rest.empty()) {
        write_json(a.json, j);
        return 0;
    }
    double fid = 0;
    std::string bdesc;
    if (b_stats) {
        const FeatureStats st(fa.features);
        bool eps = false;
        fid = frechet_distance_cholesky(st.mean(), st.covariance(), sb_stats.mu, sb_stats.sigma, dim, &eps);
        if (eps) std::fprintf(stderr, "nuance: fid calculation produces singular product; adding 1e-06 to diagonal "
                                      "of cov estimates (as pytorch-fid)\n");
        j["eps_offset"] = eps;
        bdesc = "stats " + rest[0];
        j["b"] = {{"source", bdesc}};
    } else {
        fid = frechet_distance_features(fa.features, fb.features);
        bdesc = sb->describe();
        j["b"] = {{"source", bdesc}, {"images", sb->size()}, {"seconds", fb.seconds}};
    }
    j["value"] = fid;
    print_markdown("FID", num(fid), sa.describe(), bdesc, a);
    write_json(a.json, j);
    write_plot(a, "FID " + num(fid), {{"set A", std::to_string(sa.size()) + " images"}, {"features", c.features_name()}},
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
    NUANCE_CHECK(sa.size() >= 2 && sb.size() >= 2, "KID needs at least 2 images per set, got ", sa.size(), " and ",
                 sb.size());
    const FeatureRun fa = c.features(sa, "set A", false, kSheetImages);
    const FeatureRun fb = c.features(sb, "set B", false);
    if (!fa.complete) return 0;
    const KidEstimate k =
        kernel_inception_distance_subsets(fa.features, fb.features, a.kid_subsets, a.kid_subset_size, a.g.seed);
    nlohmann::json j = c.describe();
    j.update({{"metric", "kid"}, {"value", k.mean}, {"std", k.std}, {"subsets", k.subsets},
              {"subset_size", k.subset_size}, {"a", {{"source", sa.describe()}, {"images", sa.size()}}},
              {"b", {{"source", sb.describe()}, {"images", sb.size()}}}});
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
    NUANCE_CHECK(a.splits >= 1 && a.splits <= 100000, "usage: --splits must be 1..100000, got ", a.splits);
    const FeatureRun fa = c.features(sa, "images", true, kSheetImages);
    if (!fa.complete) return 0;
    const InceptionScore s = inception_score(fa.logits, a.splits);
    nlohmann::json j = c.describe();
    j.update({{"metric", "is"}, {"value", s.mean}, {"std", std::isfinite(s.std) ? nlohmann::json(s.std) : nullptr},
              {"splits", s.splits}, {"a", {{"source", sa.describe()}, {"images", sa.size()}}}});
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
    NUANCE_CHECK(!a.g.model.empty(), "usage: nuance eval sweep needs -m MODEL --prompts FILE --samples N");
    NUANCE_CHECK(!a.ref.empty(), "usage: nuance eval sweep needs --ref (a folder or .npz statistics) to measure FID ",
                 "against");
    NUANCE_CHECK(a.inputs.empty(), "usage: nuance eval sweep takes no positional sets (use --ref)");
    if (!a.plot.empty()) check_output_path(a.plot);
    const std::vector<int> steps =
        a.steps_list.empty() ? std::vector<int>{a.g.steps} : parse_list<int>(a.steps_list, "--steps");
    const std::vector<float> cfgs =
        a.cfg_list.empty() ? std::vector<float>{a.g.cfg} : parse_list<float>(a.cfg_list, "--cfg");
    if (!a.steps_list.empty())
        for (int s : steps) NUANCE_CHECK(s >= 1 && s <= 1000, "usage: --steps ", s, " outside 1..1000");
    if (!a.cfg_list.empty())
        for (float g : cfgs) NUANCE_CHECK(g >= 0 && g <= 100, "usage: --cfg ", g, " outside 0..100");
    NUANCE_CHECK(a.g.samples >= 2, "usage: FID needs --samples >= 2 per setting, got ", a.g.samples);
    Context c(a);
    std::unique_ptr<ClipScorer> clip;
    if (!a.clip_model.empty()) clip = load_clip_scorer(a.clip_model);
    const int64_t dim = c.net->dim();
    // The reference statistics (rank 0 uses them; a folder's features are extracted by every rank's shard).
    std::vector<double> rmu, rsigma;
    if (is_stats_file(a.ref)) {
        FidStats r = read_stats_for(a.ref, dim, "--ref stats file");
        rmu = std::move(r.mu);
        rsigma = std::move(r.sigma);
    } else {
        const ImageSource ref = ImageSource::folder(a.ref);
        NUANCE_CHECK(ref.size() >= 2, "--ref needs at least 2 images, '", a.ref, "' has ", ref.size());
        const FeatureRun fr = c.features(ref, "reference", false);
        if (fr.complete) {
            const FeatureStats st(fr.features);
            rmu = st.mean();
            rsigma = st.covariance();
        }
    }
    const bool root = dist::is_root();
    nlohmann::json runs = nlohmann::json::array();
    std::vector<ChartSeries> fid_series, clip_series;
    std::vector<Image> sheet;
    std::vector<std::string> captions;
    if (root) {
        std::printf(clip ? "| steps | cfg | FID | CLIP score | samples |\n|---|---|---|---|---|\n"
                         : "| steps | cfg | FID | samples |\n|---|---|---|---|\n");
        std::fflush(stdout);
    }
    for (float cfg : cfgs) {
        ChartSeries fs_line, cs_line;
        fs_line.label = cs_line.label = "cfg " + num(cfg);
        for (int st : steps) {
            // --save-samples DIR: each setting's images in DIR/steps<S>_cfg<C>/ (the same %06d.png names per cell).
            GenArgs cell = a.g;
            if (!cell.save_samples.empty())
                cell.save_samples += "/steps" + std::to_string(st) + "_cfg" + num(cfg);
            const ImageSource src = generation_source(cell, c.model, st, cfg);
            std::vector<double> my_clip;  // this rank's per-image CLIP scores, in order
            BatchFn also;
            if (clip)
                also = [&](const std::vector<Image>& ims, int64_t first) {
                    std::vector<std::string> caps;
                    for (size_t i = 0; i < ims.size(); ++i) caps.push_back(src.prompt(first + (int64_t)i));
                    const std::vector<double> s = clip->pair_scores(ims, caps);
                    my_clip.insert(my_clip.end(), s.begin(), s.end());
                };
            const FeatureRun fr =
                extract_features(*c.net, src, a.batch, false, 1, [&](const FeatureProgress& p) {
                    c.bar.update("steps " + std::to_string(st) + " cfg " + num(cfg), (int)p.done, (int)p.total);
                }, also);
            c.bar.finish();
            const std::vector<double> clip_all = clip ? gather_doubles(my_clip) : std::vector<double>{};
            if (!fr.complete) continue;
            const FeatureStats fst(fr.features);
            const double fid = frechet_distance_cholesky(fst.mean(), fst.covariance(), rmu, rsigma, dim);
            nlohmann::json run{{"steps", st}, {"cfg", cfg}, {"fid", fid}, {"samples", src.size()},
                               {"seconds", fr.seconds}, {"clip_score", nullptr}};
            if (clip) {
                const double cs = clip_score_of(clip_all);
                run["clip_score"] = cs;
                std::printf("| %d | %s | %s | %s | %lld |\n", st, num(cfg).c_str(), num(fid).c_str(), num(cs).c_str(),
                            (long long)src.size());
                cs_line.x.push_back(st);
                cs_line.y.push_back(cs);
            } else {
                std::printf("| %d | %s | %s | %lld |\n", st, num(cfg).c_str(), num(fid).c_str(), (long long)src.size());
            }
            std::fflush(stdout);
            runs.push_back(run);
            fs_line.x.push_back(st);
            fs_line.y.push_back(fid);
            if (!fr.kept.empty()) {
                sheet.push_back(fr.kept[0]);
                captions.push_back("steps " + std::to_string(st) + " cfg " + num(cfg));
            }
        }
        fid_series.push_back(fs_line);
        clip_series.push_back(cs_line);
    }
    if (!root) return 0;
    nlohmann::json j = c.describe();
    j.update({{"metric", "sweep"}, {"model", a.g.model}, {"ref", a.ref}, {"samples", a.g.samples},
              {"seed", a.g.seed}, {"clip", clip ? nlohmann::json(a.clip_model) : nlohmann::json(nullptr)},
              {"runs", runs}});
    write_json(a.json, j);
    if (!a.plot.empty()) {
        ChartSpec spec;
        spec.title = "FID vs steps";
        spec.x_label = "steps";
        spec.y_label = "FID";
        spec.series = fid_series;
        Image charts = line_chart(spec);
        if (clip) {
            ChartSpec cs = spec;
            cs.title = "CLIP score vs steps";
            cs.y_label = "CLIP score";
            cs.series = clip_series;
            charts = beside(charts, line_chart(cs));
        }
        write_png(a.plot, beside(charts, sample_sheet(sheet, captions, 128, 16)));
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
    s->add_option("--features", a.features, "Feature network: inception (default; --inception FILE) | "
                                            "emoji-classifier:FILE (nuance's emoji classifier, 128-d)");
    add_generation_options(s, a.g, positional, "; also KID's subset draw");
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
    sweep->add_option("--clip", a->clip_model, "CLIP score per setting with this CLIPModel (safetensors or "
                                               "transformers folder), on the same samples");
    return [a, fid, kid, is] {
        if (fid->parsed()) return run_fid(*a);
        if (kid->parsed()) return run_kid(*a);
        if (is->parsed()) return run_is(*a);
        return run_sweep(*a);
    };
}

}  // namespace nuance::cli
