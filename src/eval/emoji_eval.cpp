// Shape letters: N images, F = 128 classifier features, C = 9 classes.
#include "eval/emoji_eval.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>

#include "adapters/lora_library.h"
#include "core/error.h"
#include "core/mt19937.h"
#include "eval/feature_extractor.h"
#include "eval/fid.h"
#include "io/contact_sheet.h"
#include "io/image.h"
#include "io/weights.h"
#include "models/model_family.h"
#include "ops/shape_ops.h"
#include "pipelines/generate.h"
#include "train/data_loader.h"
#include "train/dataset.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Rows of a [N, F] tensor as a new contiguous [n, F] tensor.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
    const int64_t f = t.size(1);
    const Tensor src = t.contiguous();
    Tensor out = Tensor::empty({(int64_t)rows.size(), f});
    const float* s = src.data<float>();
    float* d = out.data<float>();
    for (size_t i = 0; i < rows.size(); ++i) std::copy_n(s + rows[i] * f, f, d + (int64_t)i * f);
    return out;
}

std::vector<int64_t> take(const std::vector<int64_t>& v, const std::vector<int64_t>& rows) {
    std::vector<int64_t> out;
    for (int64_t r : rows) out.push_back(v[(size_t)r]);
    return out;
}

// Fisher-Yates with Mt19937: the same order on every machine.
void shuffle(std::vector<int64_t>& v, Mt19937& rng) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[uniform_below(rng, (uint32_t)i)]);
}

nlohmann::json distances(const Tensor& a, const Tensor& b) {
    return {{"fid", frechet_distance(FeatureStats(a), FeatureStats(b))}, {"kid", kernel_inception_distance(a, b)},
            {"images", {a.size(0), b.size(0)}}};
}

nlohmann::json accuracy_json(const ClassAccuracy& a) {
    return {{"images", a.count}, {"accuracy", a.accuracy}, {"balanced_accuracy", a.balanced_accuracy}};
}

struct Prompt {
    int64_t row;
    std::string text;
    int64_t category;
    std::string style;
};

// `n` prompts alternating over the styles (sorted by name), each style's rows in a seeded random order, reshuffled
// when used up.
std::vector<Prompt> pick_prompts(const ImageCaptionDataset& data, const EmojiLabels& labels, int64_t n, uint64_t seed,
                                 int64_t concept_id) {
    std::map<std::string, std::vector<int64_t>> by_style;
    for (int64_t i = 0; i < data.size(); ++i)
        if (concept_id < 0 || labels.concept_id[(size_t)i] == concept_id) by_style[labels.style[(size_t)i]].push_back(i);
    NUANCE_CHECK(!by_style.empty(), "eval-emoji: --concept ", concept_id, " matches no row of the manifest");
    std::vector<std::vector<int64_t>> orders;
    std::vector<Mt19937> rngs;
    for (auto& [style, rows] : by_style) {
        rngs.emplace_back(mix_seed(seed, 31, orders.size()));
        orders.push_back(rows);
        shuffle(orders.back(), rngs.back());
    }
    std::vector<size_t> next(orders.size(), 0);
    std::vector<Prompt> out;
    for (int64_t i = 0; i < n; ++i) {
        const size_t s = (size_t)i % orders.size();
        if (next[s] == orders[s].size()) {
            shuffle(orders[s], rngs[s]);
            next[s] = 0;
        }
        const int64_t row = orders[s][next[s]++];
        out.push_back({row, data.record(row).caption, labels.category[(size_t)row], labels.style[(size_t)row]});
    }
    return out;
}

struct Generated {
    std::vector<Image> images;
    double seconds = 0;
};

Generated generate_all(const DiffusionModel& m, const EmojiEvalOptions& o, const std::vector<std::string>& prompts,
                       const std::string& phase) {
    Generated g;
    const auto t0 = Clock::now();
    for (size_t i = 0; i < prompts.size(); ++i) {
        GenerateParams p;
        p.prompt = prompts[i];
        p.width = p.height = o.resolution;
        p.steps = o.steps;
        p.cfg_scale = o.cfg;
        p.sampler = o.sampler;
        p.scheduler = o.scheduler;
        p.seed = (int64_t)((o.seed + i) & 0x7fffffffffffffffull);  // image i: the same seed for every model
        g.images.push_back(generate(m, p).at(0).image);
        if (o.on_progress) o.on_progress({phase, (int64_t)i + 1, (int64_t)prompts.size(), seconds_since(t0)});
    }
    g.seconds = seconds_since(t0);
    return g;
}

// Accuracy and distances of generated images against their prompts' rows and the reference features.
nlohmann::json measure(const FeatureExtractor& net, const Generated& g, const std::vector<Prompt>& prompts,
                       const Tensor& reference) {
    const FeatureExtractor::Output out = net.extract(g.images, true);
    std::vector<int64_t> targets;
    for (const Prompt& p : prompts) targets.push_back(p.category);
    const ClassAccuracy acc = class_accuracy(out.logits, targets);
    nlohmann::json j = accuracy_json(acc);
    std::map<std::string, std::pair<int64_t, int64_t>> by_style;  // style -> (right, total)
    for (size_t i = 0; i < prompts.size(); ++i) {
        auto& [right, total] = by_style[prompts[i].style];
        right += acc.predicted[i] == prompts[i].category;
        ++total;
    }
    for (const auto& [style, rt] : by_style) j["accuracy_by_style"][style] = (double)rt.first / (double)rt.second;
    const nlohmann::json d = distances(out.features, reference);
    j["fid"] = d["fid"];
    j["kid"] = d["kid"];
    j["seconds"] = g.seconds;
    j["seconds_per_image"] = g.images.empty() ? 0.0 : g.seconds / (double)g.images.size();
    return j;
}

}  // namespace

nlohmann::json evaluate_emoji(const EmojiEvalOptions& o) {
    NUANCE_CHECK(o.samples >= 0 && o.samples <= 1000000, "eval-emoji: samples must be in 0..1000000, got ", o.samples);
    NUANCE_CHECK(!o.data.empty(), "eval-emoji: no data folder given (--data)");
    NUANCE_CHECK(!o.classifier.empty(), "eval-emoji: no classifier given (--classifier)");
    NUANCE_CHECK(o.sheet.empty() || !o.sheet_prompts.empty(), "eval-emoji: --sheet needs --sheet-prompts");
    NUANCE_CHECK(o.sheet.empty() || !o.model.empty(), "eval-emoji: --sheet needs a model (-m)");
    NUANCE_CHECK(!o.random_model || !o.model.empty(),
                 "eval-emoji: --random-model needs -m (the architecture to re-initialise)");
    const std::vector<std::string>& classes = emoji_categories();
    // The classifier is one of `nuance eval`'s feature networks (eval/feature_extractor.h): its features and logits
    // come through the same interface as `nuance eval fid --features emoji-classifier:FILE` uses.
    LoadedClassifier cls = load_emoji_classifier(o.classifier, classes);
    const std::vector<std::string> cls_classes = cls.classes;
    const std::map<std::string, std::string> cls_metadata = cls.metadata;
    const std::unique_ptr<FeatureExtractor> net = make_emoji_classifier_extractor(std::move(cls));

    // ---- real images ----
    auto t0 = Clock::now();
    DatasetOptions dopt;
    dopt.resolution = 32;
    const ImageCaptionDataset data(o.data, dopt);
    const EmojiLabels labels = emoji_labels(data, (int64_t)classes.size());
    const int64_t n = data.size();
    NUANCE_CHECK(n >= 4, "eval-emoji: '", o.data, "' has ", n, " images; at least 4 are needed");
    Tensor real_features, real_logits;
    {
        std::vector<Tensor> f, l;
        const int64_t chunk = 512;
        for (int64_t s = 0; s < n; s += chunk) {
            std::vector<Image> images;
            for (int64_t i = s; i < std::min(n, s + chunk); ++i) images.push_back(data.load_image(i));
            const FeatureExtractor::Output out = net->extract(images, true);
            f.push_back(out.features);
            l.push_back(out.logits);
            if (o.on_progress) o.on_progress({"real", std::min(n, s + chunk), n, seconds_since(t0)});
        }
        real_features = f.size() == 1 ? f[0] : cat(f, 0);
        real_logits = l.size() == 1 ? l[0] : cat(l, 0);
    }
    std::vector<int64_t> held, rest;
    for (int64_t i = 0; i < n; ++i) (emoji_heldout(labels.concept_id[(size_t)i]) ? held : rest).push_back(i);

    // The floor's sample S and the reference R (every other real image): model samples are compared with R too.
    std::vector<int64_t> order((size_t)n);
    std::iota(order.begin(), order.end(), 0);
    Mt19937 rng(mix_seed(o.seed, 41));
    shuffle(order, rng);
    const int64_t floor_n = std::max<int64_t>(2, std::min(o.samples > 0 ? o.samples : 2000, n / 2));
    std::vector<int64_t> sample(order.begin(), order.begin() + floor_n), reference(order.begin() + floor_n, order.end());
    std::sort(sample.begin(), sample.end());
    std::sort(reference.begin(), reference.end());
    const Tensor ref_features = take_rows(real_features, reference);

    nlohmann::json report;
    report["classifier"] = {{"path", o.classifier}, {"classes", cls_classes}};
    for (const char* k : {"train_accuracy", "heldout_accuracy", "heldout_balanced_accuracy", "epochs"})
        if (cls_metadata.count(k)) report["classifier"][k] = cls_metadata.at(k);
    report["data"] = {{"path", o.data}, {"images", n}, {"heldout_rule", "concept_id % 10 == 0"}};
    report["reference"] = {{"images", (int64_t)reference.size()},
                           {"rule", str("all real images but a seeded random sample of ", floor_n,
                                        " (the floor's sample); model samples are compared with these")}};
    nlohmann::json real;
    real["train_split"] = accuracy_json(class_accuracy(take_rows(real_logits, rest), take(labels.category, rest)));
    if (!held.empty())
        real["heldout"] = accuracy_json(class_accuracy(take_rows(real_logits, held), take(labels.category, held)));
    real["all"] = accuracy_json(class_accuracy(real_logits, labels.category));
    real["floor"] = distances(take_rows(real_features, sample), ref_features);
    if (held.size() >= 2 && rest.size() >= 2)
        real["heldout_vs_rest"] = distances(take_rows(real_features, held), take_rows(real_features, rest));
    report["real"] = real;
    if (o.model.empty()) return report;

    // ---- the model ----
    ModelLoadOptions lo;
    lo.precision = o.precision;
    const std::unique_ptr<DiffusionModel> loaded = load_model(o.model, lo);
    DiffusionModel& model = *loaded;
    LoraMerge merge;
    std::vector<LoraUse> uses;
    for (const std::string& spec : o.loras) {
        const LoraTag t = parse_lora_flag(spec);
        NUANCE_CHECK_CODE(file_exists(t.name), NotFound, "eval-emoji: --lora file '", t.name, "' does not exist");
        uses.push_back({t.name, std::filesystem::path(t.name).stem().string(), t.te, t.unet});
    }
    const std::string lora_hashes = apply_loras(model, uses, merge);
    report["settings"] = {{"samples", o.samples}, {"resolution", o.resolution}, {"steps", o.steps},
                          {"cfg", o.cfg}, {"sampler", o.sampler}, {"scheduler", o.scheduler},
                          {"seed", o.seed}, {"precision", precision_name(model.precision)},
                          {"prompts", "manifest captions, styles alternating, seed + i for image i"},
                          {"loras", o.loras}, {"lora_hashes", lora_hashes}, {"concept_id", o.concept_id}};
    GenerateParams check;
    check.width = check.height = o.resolution;
    check.steps = o.steps;
    check.cfg_scale = o.cfg;
    check.sampler = o.sampler;
    check.scheduler = o.scheduler;
    validate_params(model, check);  // a bad sampler or size fails before any image is made

    const std::vector<Prompt> prompts = pick_prompts(data, labels, o.samples, o.seed, o.concept_id);
    std::vector<std::string> texts;
    for (const Prompt& p : prompts) texts.push_back(p.text);
    if (o.samples > 0) {
        report["model"] = measure(*net, generate_all(model, o, texts, "model"), prompts, ref_features);
        report["model"]["path"] = o.model;
    }
    if (!o.sheet.empty()) {
        const Generated g = generate_all(model, o, o.sheet_prompts, "sheet");
        ContactSheetOptions so;
        so.scale = o.sheet_scale;
        write_png(o.sheet, contact_sheet(g.images, o.sheet_prompts, so));
        report["sheet"] = {{"path", o.sheet}, {"prompts", o.sheet_prompts}};
    }
    if (o.random_model && o.samples > 0) {
        // Fresh weights for the denoiser and the text encoder; the VAE (a separately trained first stage) stays.
        // Seeds per component as before the family seam: unet 51, text_encoder 52, text_encoder_2 53; others 54+.
        uint64_t next = 54;
        for (auto& [name, mod] : model.modules()) {
            if (name == "vae" || !mod) continue;
            const uint64_t k = name == "unet" ? 51 : name == "text_encoder" ? 52 : name == "text_encoder_2" ? 53 : next++;
            init_random(*mod, mix_seed(o.seed, k));
        }
        report["untrained"] = measure(*net, generate_all(model, o, texts, "untrained"), prompts, ref_features);
        report["untrained"]["init"] = "init_random (denoiser, text encoders); trained VAE kept";
    }
    return report;
}

}  // namespace nuance
