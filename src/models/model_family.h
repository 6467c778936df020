// Model families as plug-ins: one ModelSpec registry entry per family (sd1, sd2, sdxl; sd3, flux, dit ...).
//
//   load_model(path, opts):  open the file or diffusers folder as a TensorIndex (names -> shape, dtype; configs)
//                            -> every family's detect() scores it (0 = not mine, higher = more specific)
//                            -> the best family's load() builds the DiffusionModel (models/diffusion_model.h).
//
// The table starts as builtin_model_families() from models/model_registry.cpp (no static
// initialisers the linker could drop); tests may add their own families with register_model_family().
// How to add a family: docs/adding-a-model.md.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/logger.h"
#include "core/tensor.h"
#include "io/weight_file.h"
#include "models/diffusion_model.h"

namespace nuance {

struct ModelLoadOptions {
    std::string family;      // "" = detect; else the registry name to load as (skips detection, still checked)
    std::string vae_path;    // --vae: replaces the checkpoint's VAE (single file, original or diffusers names)
    // Split-file components (--clip-l --clip-g --clip-h --t5xxl): text encoders kept in their own files (SD1/SDXL
    // UNet-only files, SD3, Flux; --clip-h: SD2's OpenCLIP ViT-H). A family that cannot use one says so (Error naming
    // the flag).
    std::string clip_l, clip_g, clip_h, t5xxl;
    std::string prediction;  // "" = from the model, else "epsilon" | "v_prediction"
    // Component configs (diffusers config.json content) that override what shapes cannot tell (head counts, norm
    // groups); keys "unet", "vae", "text_encoder", "text_encoder_2", "transformer". A diffusers folder supplies its own.
    std::map<std::string, nlohmann::json> configs;
    const Logger* logger = nullptr;
    // Precision of every matmul/conv (Auto: default_precision()). Weight matrices stay as stored in the file
    // (mmap'd) and are converted and packed once, on first use, so a bf16 model needs no fp32 copy at any time.
    Precision precision = Precision::FP32;
    // "" = weights as the file stores them; else a quantization recipe (q8_0, q4_0, q4_k_m ...: models/
    // quantize_weights.h) applied in memory after the load, to the denoiser and the text encoders (--type).
    std::string weight_type;
};

struct TensorInfo {
    Shape shape;
    DType dtype = DType::F32;
};

// What detection sees: tensor names -> shape and dtype, without reading any tensor data.
//   single file: its own keys, in whatever layout it uses (original "model.diffusion_model.*", diffusers names,
//                BFL names, ComfyUI's prefixed copies ...);
//   diffusers folder: "<component>/<key>" for each component folder's weights ("unet/conv_in.weight",
//                "transformer/x_embedder.weight"), and configs["model_index"] / configs["<component>"] holding
//                model_index.json and each component's config.json (those that parse; the loader reports the rest).
struct TensorIndex {
    bool folder = false;
    std::map<std::string, TensorInfo> tensors;
    std::set<std::string> components;  // folder: its component subfolders ("unet", "vae", "text_encoder" ...)
    std::map<std::string, nlohmann::json> configs;

    bool has(const std::string& key) const { return tensors.count(key) != 0; }
    bool has_prefix(const std::string& prefix) const;
    const TensorInfo* find(const std::string& key) const;
    // The first key with this prefix and suffix (nullptr if none), e.g. ("model.diffusion_model.", ".attn2.to_k.weight").
    const std::pair<const std::string, TensorInfo>* find_first(const std::string& prefix,
                                                               const std::string& suffix) const;
    // A config string field, "" when absent or not a string: config_string("model_index", "_class_name").
    std::string config_string(const std::string& config, const std::string& key) const;
    // Up to n keys spread over the index (for error messages).
    std::vector<std::string> sample_keys(size_t n) const;
    static TensorIndex of(const std::map<std::string, Tensor>& tensors);
};

// A model on disk, opened once: the index, and for a single file the parsed (mmap'd) weights that load() reuses.
struct ModelSource {
    std::string path;
    TensorIndex index;
    std::shared_ptr<const WeightFile> file;  // single file only
    bool folder() const { return index.folder; }
};

// Opens `path` (a regular weights file or a diffusers folder with model_index.json). Errors name the path.
ModelSource open_model_source(const std::string& path);

struct ModelSpec {
    std::string name;         // "sd1", "sd2", "sdxl", "sd3", "flux", "dit" ... (ModelLoadOptions::family, `nuance info`)
    std::string description;  // "Stable Diffusion 1.x (CLIP ViT-L, 4-channel latents, epsilon)"
    // 0 = not this family; higher = more specific (a complete checkpoint 100, a UNet/transformer-only file 50 ...).
    std::function<int(const TensorIndex&)> detect;
    std::function<std::unique_ptr<DiffusionModel>(const ModelSource&, const ModelLoadOptions&)> load;
    // Defaults without loading (the server's defaults endpoint): refine `defaults` from the source's index and JSON
    // files. Optional; when unset `defaults` is used as it is.
    GenerationDefaults defaults;
    std::function<GenerationDefaults(const ModelSource&)> probe_defaults;
};

// Adds a family (Error: empty name, a name already taken, no detect or no load).
void register_model_family(ModelSpec spec);
// Removes a family added by register_model_family (tests); false when there is none of that name.
bool unregister_model_family(const std::string& name);
// Every family, built-ins first (a copy: safe while another thread registers).
std::vector<ModelSpec> model_families();
std::optional<ModelSpec> find_model_family(const std::string& name);

struct FamilyMatch {
    ModelSpec spec;
    int score = 0;
};
// The best-scoring family for a source, or an Error (Unsupported) that names the path, lists the known families
// and shows a sample of the keys seen. `forced` = ModelLoadOptions::family.
FamilyMatch detect_model_family(const ModelSource& src, const std::string& forced = "");

// Opens, detects and loads. The returned model's path/name/precision are set.
std::unique_ptr<DiffusionModel> load_model(const std::string& path, const ModelLoadOptions& opts = {});

// Defaults for a model without loading it (reads the index and JSON files only). Errors name the file.
GenerationDefaults probe_generation_defaults(const std::string& path);

// The built-in families, in order (models/model_registry.cpp: the one place a new family is added).
std::vector<ModelSpec> builtin_model_families();

}  // namespace nuance
