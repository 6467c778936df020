#include "train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fcntl.h>
#include <unistd.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "train/train_arch.h"

namespace fs = std::filesystem;

namespace nuance {

void save_checkpoint_file(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                          const nlohmann::json& meta) {
    save_safetensors(path, tensors, {{"format", "nuance-train"}, {"nuance_train", meta.dump()}});
}

CheckpointFile load_checkpoint_file(const std::string& path) {
    NUANCE_CHECK_CODE(file_exists(path), NotFound, "checkpoint '", path, "' does not exist");
    NUANCE_CHECK_CODE(is_safetensors_file(path), InvalidArgument, "checkpoint '", path, "' is not a safetensors file");
    WeightFile wf = load_safetensors(path);
    auto it = wf.metadata.find("nuance_train");
    NUANCE_CHECK(it != wf.metadata.end(), "'", path, "' is not a nuance training checkpoint (no nuance_train metadata)");
    CheckpointFile ck;
    try {
        ck.meta = parse_json_text(it->second, "nuance_train");  // depth-bounded: the metadata is hostile too
    } catch (const std::exception& e) {
        fail(ErrorCode::InvalidArgument, "checkpoint '", path, "': bad nuance_train metadata: ", e.what());
    }
    NUANCE_CHECK(ck.meta.is_object() && ck.meta.contains("step") && ck.meta["step"].is_number_integer() &&
                     ck.meta.contains("loader") && ck.meta["loader"].is_object(),
                 "checkpoint '", path, "': nuance_train metadata lacks step/loader");
    ck.tensors = std::move(wf.tensors);
    return ck;
}

namespace {

std::vector<std::pair<long long, std::string>> step_files(const std::string& dir) {
    std::vector<std::pair<long long, std::string>> v;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return v;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        long long s = 0;
        char tail[32] = {0};
        if (std::sscanf(n.c_str(), "step-%lld.%31s", &s, tail) == 2 && std::string(tail) == "safetensors")
            v.emplace_back(s, e.path().string());
    }
    std::sort(v.begin(), v.end());
    return v;
}

}  // namespace

std::string newest_checkpoint(const std::string& dir) {
    remove_stale_temp_files(dir);  // resume: what a killed run was writing
    const auto v = step_files(dir);
    return v.empty() ? std::string() : v.back().second;
}

void prune_checkpoints(const std::string& dir, int keep) {
    remove_stale_temp_files(dir);
    const auto v = step_files(dir);
    const size_t k = (size_t)std::max(1, keep);
    for (size_t i = 0; i + k < v.size(); ++i) std::remove(v[i].second.c_str());
}

nlohmann::json options_json(const TrainOptions& o) {
    return {{"model", o.model},       {"data", o.data},
            {"vae", o.vae},           {"steps", o.steps},
            {"batch", o.batch},       {"resolution", o.resolution},
            {"lr", o.lr},             {"min_lr", o.min_lr},
            {"warmup", o.warmup},     {"weight_decay", o.weight_decay},
            {"max_grad_norm", o.max_grad_norm}, {"ema_decay", o.ema_decay},
            {"prediction", o.prediction}, {"caption_dropout", o.caption_dropout},
            {"style_dropout", o.style_dropout}, {"keyword_prob", o.keyword_prob},
            {"random_flip", o.random_flip}, {"kl_weight", o.kl_weight},
            {"seed", o.seed},         {"limit", o.limit},
            {"exclude_concepts", o.exclude_concepts}, {"balance_concepts", o.balance_concepts},
            {"init", o.init},         {"qat", o.qat},
            {"precision", precision_name(o.precision)}, {"min_snr_gamma", o.min_snr_gamma},
            {"noise_offset", o.noise_offset}};
}

void write_json(const std::string& path, const nlohmann::json& j) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    NUANCE_CHECK_CODE(!ec, Io, "cannot create the folder of '", path, "': ", ec.message());
    remove_stale_temp_files(fs::path(path).parent_path().string());  // an export killed half-way
    const std::string text = j.dump(2) + "\n";
    write_file_atomic(path, [&](FILE* f) { return std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

void write_component(const std::string& dir, Module& m, const std::string& weights, const nlohmann::json& config) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    NUANCE_CHECK_CODE(!ec, Io, "cannot create '", dir, "': ", ec.message());
    remove_stale_temp_files(dir);  // an export killed half-way
    std::vector<std::pair<std::string, Tensor>> t;
    for (auto& [name, v] : state_dict(m)) t.emplace_back(name, v.to(DType::F16));
    save_safetensors(dir + "/" + weights, t, {{"format", "pt"}});
    write_json(dir + "/config.json", config);
}

void export_vae(AutoencoderKL& vae, const std::string& dir, int64_t sample_size) {
    write_component(dir, vae, "diffusion_pytorch_model.safetensors", vae_diffusers_config(vae.config(), sample_size));
}

std::unique_ptr<AutoencoderKL> load_trained_vae(const std::string& path) {
    std::string dir = path;
    if (is_directory(path + "/vae")) dir = path + "/vae";
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "--vae '", path, "' is not a folder (expected a `nuance train ",
                      "--model vae` run folder or a diffusers VAE folder)");
    const std::string w = find_first_file(dir, {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"});
    NUANCE_CHECK_CODE(!w.empty(), NotFound, "--vae '", path, "': no diffusion_pytorch_model.safetensors in ", dir);
    // A hostile file like any model config: regular file (a FIFO is named as one), bounded size and depth.
    const std::optional<nlohmann::json> cfg_file = read_optional_json_object(dir + "/config.json");
    NUANCE_CHECK_CODE(cfg_file.has_value(), NotFound, "--vae '", path, "': no config.json in ", dir);
    const nlohmann::json& cfg = *cfg_file;
    WeightFile wf = load_weights(w);
    AutoencoderKLConfig c = AutoencoderKLConfig::detect(wf.tensors);
    c.apply_diffusers_config(cfg);
    auto vae = std::make_unique<AutoencoderKL>(c);
    LoadOptions lo;
    lo.source = w;
    load_module(*vae, wf.tensors, lo);
    return vae;
}

}  // namespace nuance
