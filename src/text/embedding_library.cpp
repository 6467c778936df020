// Textual-inversion files and folders (embedding_library.h).
#include "text/embedding_library.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "io/ckpt.h"
#include "io/safetensors.h"
#include "io/weights.h"

namespace nuance {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxWidth = 8192;
constexpr size_t kMaxFiles = 10000;

std::string lower(std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

// [D] or [N, D] float -> F32 [N, D], checked.
Tensor vectors_of(const std::string& path, const std::string& key, const Tensor& t) {
    NUANCE_CHECK(dtype_is_float(t.dtype()), "embedding '", path, "': tensor '", key, "' has dtype ",
                 dtype_name(t.dtype()), ", expected float vectors");
    NUANCE_CHECK(t.dim() == 1 || t.dim() == 2, "embedding '", path, "': tensor '", key, "' has shape ", t.shape(),
                 ", expected [vectors, width] or [width]");
    const int64_t n = t.dim() == 2 ? t.size(0) : 1, d = t.size(t.dim() - 1);
    NUANCE_CHECK(d >= 1 && d <= kMaxWidth, "embedding '", path, "': tensor '", key, "' has width ", d,
                 " (expected 1..", kMaxWidth, ")");
    NUANCE_CHECK(n >= 1, "embedding '", path, "': tensor '", key, "' holds no vectors");
    NUANCE_CHECK(n <= kMaxEmbeddingVectors, "embedding '", path, "': tensor '", key, "' holds ", n,
                 " vectors, more than fit in one 77-token prompt window (", kMaxEmbeddingVectors, ")");
    Tensor v = t.f32().contiguous().reshape({n, d}).clone();
    const float* p = v.data<float>();
    for (int64_t i = 0; i < n * d; ++i)
        NUANCE_CHECK(std::isfinite(p[i]), "embedding '", path, "': tensor '", key, "' holds ", p[i], " at ", i);
    return v;
}

}  // namespace

const Tensor& TextualInversion::for_encoder(const std::string& key, int64_t width, const std::string& model) const {
    auto describe = [&] {
        std::string s;
        for (const auto& [k, v] : vectors) s += (s.empty() ? "" : ", ") + (k.empty() ? "" : k + " ") + str(v.shape());
        return s;
    };
    auto it = vectors.find(key);
    if (it == vectors.end()) {
        if (key.empty())
            fail(ErrorCode::InvalidArgument, "embedding '", name, "' (", path, ") holds SDXL vectors (", describe(),
                 ") but ", model, " has one text encoder of width ", width, ": an embedding for SDXL?");
        fail(ErrorCode::InvalidArgument, "embedding '", name, "' (", path, ") holds one set of vectors (", describe(),
             ") but ", model, " has two text encoders (clip_l, clip_g) and needs an SDXL embedding with both");
    }
    NUANCE_CHECK(it->second.size(1) == width, "embedding '", name, "' (", path, ") has vectors of width ",
                 it->second.size(1), key.empty() ? "" : " for " + key, " but ", model, "'s text encoder",
                 key.empty() ? "" : " " + key, " is ", width, " wide (an embedding for another model: 768 = SD1.x, ",
                 "1024 = SD2.x, 768 + 1280 = SDXL)");
    return it->second;
}

TextualInversion load_textual_inversion(const std::string& path) {
    require_regular_file(path, "embedding file");
    TextualInversion ti;
    ti.path = path;
    ti.name = stem(path);
    WeightFile w;
    if (is_safetensors_file(path)) {
        w = load_safetensors(path);
    } else {
        const WeightFormat f = detect_weight_format(path);
        NUANCE_CHECK_CODE(f == WeightFormat::TorchZip || f == WeightFormat::Unknown, Unsupported, "embedding '", path,
                          "' is neither a safetensors nor a torch file");
        w = load_ckpt_nested(path);
    }
    auto meta = [&](const char* k) -> std::string {
        auto it = w.metadata.find(k);
        return it == w.metadata.end() ? "" : it->second;
    };
    if (const std::string s = meta("step"); !s.empty()) ti.step = std::strtoll(s.c_str(), nullptr, 10);
    ti.checkpoint_name = meta("sd_checkpoint_name");

    std::vector<std::string> params;
    for (const auto& [k, t] : w.tensors)
        if (k.rfind("string_to_param.", 0) == 0) params.push_back(k);
    if (w.tensors.count("clip_l") || w.tensors.count("clip_g")) {
        NUANCE_CHECK(w.tensors.count("clip_l") && w.tensors.count("clip_g"), "embedding '", path,
                     "' has only one of clip_l / clip_g (an SDXL embedding needs both)");
        ti.vectors["clip_l"] = vectors_of(path, "clip_l", w.tensors.at("clip_l"));
        ti.vectors["clip_g"] = vectors_of(path, "clip_g", w.tensors.at("clip_g"));
        NUANCE_CHECK(ti.vectors["clip_l"].size(0) == ti.vectors["clip_g"].size(0), "embedding '", path,
                     "': clip_l has ", ti.vectors["clip_l"].size(0), " vectors but clip_g ",
                     ti.vectors["clip_g"].size(0));
    } else if (!params.empty()) {
        // A1111 takes the first (and in practice only) entry of string_to_param.
        NUANCE_CHECK(params.size() == 1, "embedding '", path, "' has ", params.size(),
                     " string_to_param entries; expected one");
        ti.vectors[""] = vectors_of(path, params[0], w.tensors.at(params[0]));
    } else if (w.tensors.count("emb_params")) {
        ti.vectors[""] = vectors_of(path, "emb_params", w.tensors.at("emb_params"));
    } else if (w.tensors.size() == 1) {  // diffusers: {"<token>": vector(s)}
        const auto& [k, t] = *w.tensors.begin();
        ti.vectors[""] = vectors_of(path, k, t);
    } else {
        std::string ex;
        for (const auto& [k, t] : w.tensors) {
            if (ex.size() > 200) break;
            ex += (ex.empty() ? "" : ", ") + k;
        }
        fail(ErrorCode::InvalidArgument, "embedding '", path, "' is no textual-inversion file: none of ",
             "string_to_param, emb_params, clip_l/clip_g (", w.tensors.size(), " tensors", ex.empty() ? "" : ": " + ex,
             ")");
    }
    ti.count = ti.vectors.begin()->second.size(0);
    return ti;
}

std::shared_ptr<EmbeddingLibrary> EmbeddingLibrary::scan(const std::string& dir) {
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "embedding folder '", dir, "' is not a folder");
    auto lib = std::make_shared<EmbeddingLibrary>();
    lib->dir_ = dir;
    std::vector<std::string> files;
    std::error_code ec;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        if (it.depth() > 8) {
            it.disable_recursion_pending();
            continue;
        }
        std::error_code e2;
        if (!it->is_regular_file(e2)) continue;
        const std::string ext = lower(it->path().extension().string());
        if (ext != ".safetensors" && ext != ".pt" && ext != ".bin") continue;
        NUANCE_CHECK(files.size() < kMaxFiles, "embedding folder '", dir, "' holds more than ", kMaxFiles, " files");
        files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        const std::string name = stem(f);
        if (!name.empty()) lib->files_.emplace(name, f);  // the first in path order wins
    }
    return lib;
}

std::vector<std::string> EmbeddingLibrary::names() const {
    std::vector<std::string> out;
    for (const auto& [n, p] : files_) out.push_back(n);
    return out;
}

std::string EmbeddingLibrary::path_of(const std::string& name) const {
    auto it = files_.find(name);
    return it == files_.end() ? "" : it->second;
}

std::shared_ptr<const TextualInversion> EmbeddingLibrary::get(const std::string& name) const {
    auto f = files_.find(name);
    NUANCE_CHECK_CODE(f != files_.end(), NotFound, "no embedding '", name, "' in '", dir_, "'");
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = loaded_.find(name);
        if (it != loaded_.end()) return it->second;
    }
    auto ti = std::make_shared<const TextualInversion>(load_textual_inversion(f->second));
    std::lock_guard<std::mutex> lock(mu_);
    return loaded_.emplace(name, ti).first->second;
}

std::vector<std::shared_ptr<const TextualInversion>> EmbeddingLibrary::mentioned(const std::string& text) const {
    std::vector<std::shared_ptr<const TextualInversion>> out;
    if (files_.empty()) return out;
    const std::string t = lower(text);
    for (const auto& [name, path] : files_)
        if (t.find(lower(name)) != std::string::npos) out.push_back(get(name));
    return out;
}

}  // namespace nuance
