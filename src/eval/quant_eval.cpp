#include "eval/quant_eval.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "eval/feature_extractor.h"
#include "eval/golden_case.h"
#include "eval/image_metrics.h"
#include "io/gguf.h"
#include "io/gguf_quantize.h"
#include "io/weights.h"
#include "models/model_family.h"
#include "models/sd/sd_split_files.h"
#include "models/sd/stable_diffusion.h"
#include "models/unet/unet2d.h"
#include "pipelines/generate.h"
#include "train/dataset.h"
#include "train/emoji_classifier.h"
#include "train/emoji_dataset.h"

namespace nuance {

namespace {

struct Prompts {
    std::vector<std::string> text;
    std::vector<int64_t> category;  // empty without the manifest
};

// `n` manifest rows spread evenly over the set (deterministic), or the model's default prompt n times.
Prompts pick(const QuantEvalOptions& o, const std::string& fallback) {
    Prompts p;
    if (o.data.empty()) {
        p.text.assign((size_t)o.samples, fallback);
        return p;
    }
    DatasetOptions dopt;
    dopt.resolution = 32;
    const ImageCaptionDataset data(o.data, dopt);
    const EmojiLabels labels = emoji_labels(data, (int64_t)emoji_categories().size());
    NUANCE_CHECK(data.size() > 0, "eval-quant: '", o.data, "' has no images");
    for (int64_t i = 0; i < o.samples; ++i) {
        const int64_t row = i * data.size() / o.samples;
        p.text.push_back(data.record(row).caption);
        p.category.push_back(labels.category[(size_t)row]);
    }
    return p;
}

std::vector<Image> generate_all(const DiffusionModel& m, const QuantEvalOptions& o, const Prompts& p, int size,
                                const std::string& recipe) {
    std::vector<Image> out;
    for (size_t i = 0; i < p.text.size(); ++i) {
        GenerateParams g;
        g.prompt = p.text[i];
        g.width = g.height = size;
        g.steps = o.steps;
        g.cfg_scale = o.cfg;
        g.sampler = o.sampler;
        g.seed = (int64_t)((o.seed + i) & 0x7fffffffffffffffull);
        out.push_back(generate(m, g).at(0).image);
        if (o.on_progress) o.on_progress({recipe, (int64_t)i + 1, (int64_t)p.text.size()});
    }
    return out;
}

// The file `nuance quantize -m` takes for the model's UNet: a diffusers folder's unet weights, else the file.
std::string unet_source(const std::string& model) {
    if (!is_directory(model)) return model;
    const std::string w = find_first_file(model + "/unet", {"diffusion_pytorch_model.safetensors",
                                                            "diffusion_pytorch_model.fp16.safetensors"});
    NUANCE_CHECK_CODE(!w.empty(), NotFound, "eval-quant: '", model, "' has no unet/diffusion_pytorch_model.safetensors");
    return w;
}

// The UNet tensors of a written GGUF as the model loads them (blocks kept), in diffusers names.
std::map<std::string, Tensor> unet_from_gguf(const std::string& path) {
    const WeightFile wf = load_gguf(path, /*keep_quantized=*/true);
    std::map<std::string, Tensor> t = wf.tensors;
    const auto layout = bare_unet_layout(TensorIndex::of(t));
    NUANCE_CHECK(layout.has_value(), "eval-quant: '", path, "' is not a UNet-only GGUF");
    return bare_unet_tensors(t, *layout);
}

uint64_t numel_of(const WeightFile& wf) {
    uint64_t n = 0;
    for (const auto& [k, v] : wf.tensors)
        if (!k.starts_with("cond_stage_model.") && !k.starts_with("first_stage_model.") &&
            !k.starts_with("conditioner."))
            n += (uint64_t)v.numel();
    return n;
}

}  // namespace

nlohmann::json evaluate_quantization(const QuantEvalOptions& o) {
    NUANCE_CHECK(!o.recipes.empty(), "eval-quant: no types given (--types)");
    NUANCE_CHECK(!o.work_dir.empty(), "eval-quant: no work folder for the quantized files");
    NUANCE_CHECK(o.samples >= 1 && o.samples <= 100000, "eval-quant: samples must be in 1..100000, got ", o.samples);
    NUANCE_CHECK(o.data.empty() || !o.classifier.empty(), "eval-quant: --data needs --classifier");
    std::vector<QuantizeRecipe> recipes;
    for (const std::string& r : o.recipes) {
        const auto q = parse_quantize_recipe(r);
        NUANCE_CHECK(q.has_value(), "eval-quant: unknown type '", r, "' (known: ", quantize_recipe_names(), ")");
        recipes.push_back(*q);
    }
    std::filesystem::create_directories(o.work_dir);
    nlohmann::json report, rows = nlohmann::json::array();
    for (const QuantizeRecipe& r : recipes) rows.push_back({{"recipe", r.name}});

    // ---- golden: the tiny SD1.5 UNet's output per type ----
    if (!o.golden.empty()) {
        const GoldenCase gc = GoldenCase::load(o.golden);
        const std::string weights = gc.path("unet.safetensors");
        const WeightFile in = load_weights(weights);
        UNetConfig cfg = UNetConfig::detect(in.tensors);
        cfg.apply_json(gc.model_config(gc.models().at(0).first));
        auto run = [&](const std::map<std::string, Tensor>& w, Precision products) {
            UNet2DConditionModel unet(cfg);
            LoadOptions lo = gc.load_options(weights);
            lo.matrices_as_stored = true;
            lo.matrix_compute = products;
            load_module(unet, w, lo);
            return unet.forward(gc.tensor("sample"), gc.tensor("timestep"), gc.tensor("encoder_hidden_states"))
                .to_vector();
        };
        const std::vector<float> ref = run(in.tensors, Precision::FP32);
        for (size_t i = 0; i < recipes.size(); ++i) {
            const std::string out = o.work_dir + "/golden_unet_" + recipes[i].name + ".gguf";
            quantize_to_gguf(in, out, recipes[i]);
            const std::vector<float> got = run(unet_from_gguf(out), o.precision);
            double max_abs = 0, sum = 0;
            for (size_t k = 0; k < got.size(); ++k) {
                const double e = std::fabs((double)got[k] - ref[k]);
                max_abs = std::max(max_abs, e);
                sum += e;
            }
            rows[i]["golden"] = {{"max_abs", max_abs}, {"mean_abs", sum / (double)got.size()}};
        }
        report["golden"] = {{"case", o.golden},
                            {"what", std::string("UNet output vs f32 weights with fp32 products; quantized: ") +
                                         precision_name(o.precision) + " products"}};
    }
    if (o.model.empty()) {
        report["rows"] = rows;
        return report;
    }

    // ---- images of the model ----
    ModelLoadOptions lo;
    lo.precision = Precision::FP32;
    std::unique_ptr<DiffusionModel> model = load_model(o.model, lo);
    auto* sd = dynamic_cast<StableDiffusionModel*>(model.get());
    NUANCE_CHECK_CODE(sd != nullptr, Unsupported, "eval-quant: '", o.model, "' is a ", model->family_name(),
                      " model; eval-quant measures the SD families' UNets (sd1, sd2, sdxl)");
    const int size = o.resolution > 0 ? o.resolution : sd->native_size;
    const Prompts prompts = pick(o, model->generation_defaults().prompt.empty() ? "a photo" : model->generation_defaults().prompt);
    const std::vector<Image> ref = generate_all(*model, o, prompts, size, "f32");
    std::unique_ptr<FeatureExtractor> net;
    std::vector<int64_t> ref_class;
    auto classify = [&](const std::vector<Image>& images) {
        return class_accuracy(net->extract(images, true).logits,
                              prompts.category.empty() ? std::vector<int64_t>(images.size(), 0) : prompts.category);
    };
    if (!o.classifier.empty()) {
        net = make_emoji_classifier_extractor(o.classifier);
        const ClassAccuracy a = classify(ref);
        ref_class = a.predicted;
        if (!prompts.category.empty()) report["reference_accuracy"] = a.accuracy;
    }
    const std::string src = unet_source(o.model);
    const WeightFile unet_in = load_weights(src);
    const double params = (double)numel_of(unet_in);
    LoadOptions wo;
    wo.matrices_as_stored = true;
    wo.matrix_compute = o.precision;
    wo.source = src;
    for (size_t i = 0; i < recipes.size(); ++i) {
        const std::string out = o.work_dir + "/unet_" + recipes[i].name + ".gguf";
        const GgufQuantizeSummary s = quantize_to_gguf(unet_in, out, recipes[i]);
        load_module(*sd->unet, unet_from_gguf(out), wo);
        const std::vector<Image> got = generate_all(*model, o, prompts, size, recipes[i].name);
        rows[i]["unet_bytes"] = s.bytes;
        rows[i]["bits_per_param"] = 8.0 * (double)s.bytes / params;
        const double db = psnr_pooled(ref, got);
        if (std::isfinite(db)) rows[i]["psnr"] = db;
        else rows[i]["identical"] = true;  // no PSNR: every image equals its f32 image
        double ssim_sum = 0;
        for (size_t k = 0; k < got.size(); ++k) ssim_sum += ssim(ref[k], got[k]);
        rows[i]["ssim"] = ssim_sum / (double)got.size();
        if (net) {
            const ClassAccuracy a = classify(got);
            int64_t same = 0;
            for (size_t k = 0; k < got.size(); ++k) same += a.predicted[k] == ref_class[k];
            rows[i]["agreement"] = (double)same / (double)got.size();
            if (!prompts.category.empty()) rows[i]["accuracy"] = a.accuracy;
        }
    }
    report["settings"] = {{"model", o.model}, {"samples", o.samples}, {"resolution", size}, {"steps", o.steps},
                          {"cfg", o.cfg}, {"sampler", o.sampler}, {"seed", o.seed}, {"precision", precision_name(o.precision)},
                          {"prompts", o.data.empty() ? "the model's default prompt, seed + i for image i"
                                                     : "emoji manifest rows i * N / samples, seed + i for image i"},
                          {"unet_params", params}};
    report["rows"] = rows;
    return report;
}

std::string quant_eval_markdown(const nlohmann::json& report) {
    auto num = [](const nlohmann::json& row, const char* k, const char* fmt) -> std::string {
        if (!row.contains(k) || !row[k].is_number()) return "";
        char b[64];
        std::snprintf(b, sizeof b, fmt, row[k].get<double>());
        return b;
    };
    std::string s = "| type | bits / UNet param | golden ε max / mean abs error | PSNR (dB) | SSIM | classifier "
                    "agreement | classifier accuracy |\n|---|---|---|---|---|---|---|\n";
    for (const auto& row : report.value("rows", nlohmann::json::array())) {
        std::string golden;
        if (row.contains("golden"))
            golden = num(row["golden"], "max_abs", "%.4f") + " / " + num(row["golden"], "mean_abs", "%.4f");
        s += "| " + row.value("recipe", std::string("?")) + " | " + num(row, "bits_per_param", "%.2f") + " | " +
             golden + " | " + (row.value("identical", false) ? std::string("∞ (identical)") : num(row, "psnr", "%.2f")) +
             " | " + num(row, "ssim", "%.4f") + " | " +
             num(row, "agreement", "%.3f") + " | " + num(row, "accuracy", "%.3f") + " |\n";
    }
    return s;
}

}  // namespace nuance
