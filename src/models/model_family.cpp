// The model-family registry, source opening (TensorIndex) and load_model.
#include "models/model_family.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <set>

#include "backends/backend.h"
#include "core/error.h"
#include "io/json_file.h"
#include "io/weights.h"
#include "models/quantize_weights.h"

namespace nuance {

// ---------------------------------------------------------------------------------------------- TensorIndex

bool TensorIndex::has_prefix(const std::string& prefix) const {
    auto it = tensors.lower_bound(prefix);
    return it != tensors.end() && it->first.starts_with(prefix);
}

const TensorInfo* TensorIndex::find(const std::string& key) const {
    auto it = tensors.find(key);
    return it == tensors.end() ? nullptr : &it->second;
}

const std::pair<const std::string, TensorInfo>* TensorIndex::find_first(const std::string& prefix,
                                                                         const std::string& suffix) const {
    for (auto it = tensors.lower_bound(prefix); it != tensors.end() && it->first.starts_with(prefix); ++it)
        if (it->first.ends_with(suffix)) return &*it;
    return nullptr;
}

std::string TensorIndex::config_string(const std::string& config, const std::string& key) const {
    auto it = configs.find(config);
    if (it == configs.end() || !it->second.is_object()) return "";
    auto f = it->second.find(key);
    return f != it->second.end() && f->is_string() ? f->get<std::string>() : std::string();
}

std::vector<std::string> TensorIndex::sample_keys(size_t n) const {
    // One key per distinct first name segment first (shows the layout), then evenly spaced others.
    std::vector<std::string> out;
    std::set<std::string> heads;
    for (const auto& [k, _] : tensors) {
        if (out.size() >= n) break;
        if (heads.insert(k.substr(0, k.find('.'))).second) out.push_back(k);
    }
    const size_t total = tensors.size();
    if (out.size() < n && total > out.size()) {
        const size_t stride = std::max<size_t>(1, total / (n - out.size() + 1));
        size_t i = 0;
        for (const auto& [k, _] : tensors) {
            if (out.size() >= n) break;
            if (i++ % stride == stride / 2 && std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
        }
    }
    return out;
}

TensorIndex TensorIndex::of(const std::map<std::string, Tensor>& t) {
    TensorIndex ix;
    for (const auto& [k, v] : t) ix.tensors.emplace(k, TensorInfo{v.shape(), v.dtype()});
    return ix;
}

// ---------------------------------------------------------------------------------------------- ModelSource

namespace {

constexpr size_t kMaxFolderEntries = 64;  // component folders of a diffusers pipeline (SD: ~7)

const std::vector<std::string>& component_weight_names() {
    static const std::vector<std::string> names{
        "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
        "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.bin",
        "model.safetensors", "model.safetensors.index.json", "model.fp16.safetensors", "pytorch_model.bin"};
    return names;
}

// A diffusers folder: model_index.json (required), then each component folder's
// config.json and weight names. A component that does not parse is left out of the index: the family's loader
// reads it again and reports it against its own file, in its own order.
TensorIndex index_folder(const std::string& root) {
    TensorIndex ix;
    ix.folder = true;
    const std::string mi = root + "/model_index.json";
    NUANCE_CHECK_CODE(path_exists(mi), NotFound, "'", root,
                      "' is a folder without model_index.json (not a diffusers model)");
    try {  // the family's loader (or defaults probe) reads it again and reports what is wrong with it
        ix.configs["model_index"] = read_json_object(mi);
    } catch (const Error&) {
    }
    std::error_code ec;
    std::vector<std::string> subs;
    for (auto it = std::filesystem::directory_iterator(root, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
        if (subs.size() >= kMaxFolderEntries) break;
        const std::string sub = it->path().filename().string();
        if (!sub.empty() && sub[0] != '.' && is_directory(root + "/" + sub)) subs.push_back(sub);
    }
    std::sort(subs.begin(), subs.end());
    for (const std::string& sub : subs) {
        ix.components.insert(sub);
        const std::string dir = root + "/" + sub;
        try {
            if (auto j = read_optional_json_object(dir + "/config.json")) ix.configs[sub] = std::move(*j);
        } catch (const Error&) {
        }
        try {
            const std::string w = find_first_file(dir, component_weight_names());
            if (w.empty()) continue;
            const WeightFile wf = load_weights(w);
            for (const auto& [k, v] : wf.tensors) ix.tensors.emplace(sub + "/" + k, TensorInfo{v.shape(), v.dtype()});
        } catch (const Error&) {
        }
    }
    return ix;
}

}  // namespace

ModelSource open_model_source(const std::string& path) {
    ModelSource s;
    s.path = path;
    if (is_directory(path)) {
        s.index = index_folder(path);
        return s;
    }
    require_regular_file(path, "model");  // says what it is: missing, a FIFO, a symlink loop ...
    auto wf = std::make_shared<WeightFile>(load_weights(path));
    s.index = TensorIndex::of(wf->tensors);
    s.file = std::move(wf);
    return s;
}

// ---------------------------------------------------------------------------------------------- registry

namespace {

struct Registry {
    std::mutex mu;
    std::vector<ModelSpec> specs;
};

Registry& registry() {
    static Registry r{{}, builtin_model_families()};
    return r;
}

std::string family_list(const std::vector<ModelSpec>& specs) {
    std::string s;
    for (const ModelSpec& f : specs) s += str(s.empty() ? "" : ", ", f.name);
    return s.empty() ? "none" : s;
}

}  // namespace

void register_model_family(ModelSpec spec) {
    NUANCE_CHECK(!spec.name.empty(), "register_model_family: a family needs a name");
    NUANCE_CHECK(spec.detect && spec.load, "register_model_family: family '", spec.name, "' needs detect and load");
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    for (const ModelSpec& f : r.specs)
        NUANCE_CHECK(f.name != spec.name, "register_model_family: family '", spec.name, "' is already registered");
    r.specs.push_back(std::move(spec));
}

bool unregister_model_family(const std::string& name) {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = std::find_if(r.specs.begin(), r.specs.end(), [&](const ModelSpec& f) { return f.name == name; });
    if (it == r.specs.end()) return false;
    r.specs.erase(it);
    return true;
}

std::vector<ModelSpec> model_families() {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    return r.specs;
}

std::optional<ModelSpec> find_model_family(const std::string& name) {
    for (ModelSpec& f : model_families())
        if (f.name == name) return std::move(f);
    return std::nullopt;
}

FamilyMatch detect_model_family(const ModelSource& src, const std::string& forced) {
    const std::vector<ModelSpec> specs = model_families();
    if (!forced.empty()) {
        for (const ModelSpec& f : specs)
            if (f.name == forced) return {f, f.detect(src.index)};
        fail(ErrorCode::InvalidArgument, "unknown model family '", forced, "' (known: ", family_list(specs), ")");
    }
    FamilyMatch best;
    for (const ModelSpec& f : specs) {
        const int score = f.detect(src.index);
        if (score > best.score) best = {f, score};
    }
    if (best.score > 0) return best;
    std::string keys;
    for (const std::string& k : src.index.sample_keys(8)) keys += str(keys.empty() ? "'" : ", '", k, "'");
    fail(ErrorCode::Unsupported, "unknown model layout in '", src.path, "': no model family recognises it (known: ",
         family_list(specs), "); ", src.index.folder ? "its component folders hold " : "it holds ",
         src.index.tensors.size(), " tensors", keys.empty() ? std::string() : ", e.g. " + keys);
}

std::unique_ptr<DiffusionModel> load_model(const std::string& path, const ModelLoadOptions& opts) {
    // A wrong --type fails before the weights are read.
    const std::optional<QuantizeRecipe> quantize =
        opts.weight_type.empty() ? std::nullopt : std::optional(parse_weight_type(opts.weight_type));
    const ModelSource src = open_model_source(path);
    const FamilyMatch match = detect_model_family(src, opts.family);
    std::unique_ptr<DiffusionModel> m = match.spec.load(src, opts);
    NUANCE_CHECK_CODE(m != nullptr, Internal, "model family '", match.spec.name, "' loaded nothing from '", path, "'");
    if (quantize) {
        const QuantizeWeightsSummary q = quantize_model_weights(*m, *quantize);
        if (opts.logger) opts.logger->info("weights quantized in memory (--type ", q.describe(), ")");
    }
    m->path = path;
    m->name = stem(path);
    m->precision = resolve_precision(opts.precision);
    return m;
}

GenerationDefaults probe_generation_defaults(const std::string& path) {
    NUANCE_CHECK_CODE(is_directory(path) || file_exists(path), NotFound, "model '", path, "' does not exist");
    const ModelSource src = open_model_source(path);
    const FamilyMatch match = detect_model_family(src);
    return match.spec.probe_defaults ? match.spec.probe_defaults(src) : match.spec.defaults;
}

}  // namespace nuance
