#include "model_store.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <sys/stat.h>
#include <system_error>

#include "core/error.h"
#include "io/weight_file.h"

namespace nuance::server {

namespace fs = std::filesystem;

namespace {

constexpr int kMaxDepth = 3;           // models-dir sub-folders searched
constexpr size_t kMaxEntries = 10000;  // stop scanning after this many models

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

bool is_checkpoint_ext(const fs::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return (char)std::tolower(c); });
    return ext == ".safetensors" || ext == ".ckpt";
}

std::string strip_ext(const std::string& name) {
    const size_t slash = name.find_last_of('/');
    const size_t dot = name.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == 0) return name;
    return name.substr(0, dot);
}

// Request-supplied names: reject anything that looks like a path outside the list before even comparing.
void check_name_shape(const std::string& name) {
    NUANCE_CHECK(!name.empty(), "model name is empty");
    NUANCE_CHECK(name.size() <= 1024, "model name is ", name.size(), " characters long (limit 1024)");
    bool bad = name.front() == '/' || name.find('\\') != std::string::npos;
    for (unsigned char c : name) bad = bad || c < 0x20 || c == 0x7f;
    size_t start = 0;
    while (!bad && start <= name.size()) {
        const size_t end = std::min(name.find('/', start), name.size());
        const std::string part = name.substr(start, end - start);
        if (part == ".." || part == ".") bad = true;
        start = end + 1;
    }
    NUANCE_CHECK(!bad, "model name '", name, "' is not a model name: names are paths inside the models folder, "
                 "without '..', '\\' or a leading '/' (see GET /sdapi/v1/sd-models)");
}

// Throws unless `path` is a model (a regular file, or a folder when `folder`), saying what it is instead with the
// loaders' words ("too many levels of symbolic links", "is not a regular file (it is a FIFO)", "does not exist").
// Client-visible: the model's `name` replaces the server's path in the message.
void require_model_file(const std::string& path, const std::string& name, bool folder) {
    try {
        if (folder) {
            std::error_code ec;
            if (fs::is_directory(path, ec)) return;
        }
        require_regular_file(path, "model");
    } catch (const Error& e) {
        std::string msg = e.what();
        for (size_t pos; !path.empty() && (pos = msg.find(path)) != std::string::npos;)
            msg.replace(pos, path.size(), name);
        throw Error(e.code(), msg);
    }
}

}  // namespace

ModelStore::ModelStore(std::string single_model, std::string models_dir)
    : single_(std::move(single_model)), dir_(std::move(models_dir)) {
    NUANCE_CHECK(!single_.empty() || !dir_.empty(), "usage: no model: pass -m FILE or --models-dir DIR");
    if (!dir_.empty()) {
        std::error_code ec;
        NUANCE_CHECK_CODE(fs::is_directory(dir_, ec), NotFound, "models dir '", dir_, "' is not a directory");
    }
    if (!single_.empty()) {  // the operator's own path: named in full ("... too many levels of symbolic links")
        std::error_code ec;
        if (!fs::is_directory(single_, ec)) require_regular_file(single_, "model");
    }
}

void ModelStore::rescan_locked() const {
    const int64_t t = now_ms();
    if (scanned_at_ms_ >= 0 && t - scanned_at_ms_ < 1000) return;
    scanned_at_ms_ = t;
    std::vector<ModelEntry> found;
    if (!single_.empty()) {
        ModelEntry e;
        fs::path p(single_);
        e.name = p.filename().string();
        if (e.name.empty()) e.name = p.parent_path().filename().string();  // "folder/"
        e.path = single_;
        std::error_code ec;
        e.folder = fs::is_directory(p, ec);
        e.stem = e.folder ? e.name : strip_ext(e.name);
        found.push_back(e);
    }
    if (!dir_.empty()) {
        std::vector<ModelEntry> scanned;
        std::error_code ec;
        // Names are the paths inside the folder as the user laid it out: computed lexically, never from where a
        // symlink points (a symlinked model is served under its link's name; links to folders are not entered).
        fs::path root = fs::path(dir_).lexically_normal();
        if (root.has_parent_path() && root.filename().empty()) root = root.parent_path();
        fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
        for (; !ec && it != end && scanned.size() < kMaxEntries; it.increment(ec)) {
            const fs::path& p = it->path();
            const std::string fname = p.filename().string();
            if (!fname.empty() && fname[0] == '.') {
                if (it->is_directory(ec)) it.disable_recursion_pending();
                continue;
            }
            std::error_code ec2;
            const std::string rel = p.lexically_relative(root).generic_string();
            if (rel.empty() || rel == "." || rel.rfind("..", 0) == 0) continue;
            if (it->is_directory(ec2)) {
                if (fs::exists(p / "model_index.json", ec2)) {
                    scanned.push_back({rel, rel, p.string(), true});
                    it.disable_recursion_pending();
                } else if (it.depth() + 1 >= kMaxDepth) {
                    it.disable_recursion_pending();
                }
                continue;
            }
            if (it->is_regular_file(ec2) && is_checkpoint_ext(p)) scanned.push_back({rel, strip_ext(rel), p.string(), false});
        }
        std::sort(scanned.begin(), scanned.end(), [](const ModelEntry& a, const ModelEntry& b) { return a.name < b.name; });
        for (auto& e : scanned) {
            bool dup = false;
            for (const auto& f : found) dup = dup || f.name == e.name;
            if (!dup) found.push_back(std::move(e));
        }
    }
    entries_ = std::move(found);
}

std::vector<ModelEntry> ModelStore::list() const {
    std::lock_guard<std::mutex> lock(mu_);
    rescan_locked();
    return entries_;
}

ModelEntry ModelStore::resolve(const std::string& requested) const {
    std::string name = requested;
    // A1111 titles: "name.safetensors [0123456789]".
    if (name.size() > 3 && name.back() == ']') {
        const size_t open = name.rfind(" [");
        if (open != std::string::npos) name = name.substr(0, open);
    }
    check_name_shape(name);
    std::lock_guard<std::mutex> lock(mu_);
    rescan_locked();
    // A listed entry is checked again: the list is up to a second old, and the file may have changed since.
    auto usable = [](const ModelEntry& e) {
        require_model_file(e.path, e.name, e.folder);
        return e;
    };
    for (const auto& e : entries_)
        if (e.name == name) return usable(e);
    for (const auto& e : entries_)
        if (e.stem == name) return usable(e);
    // A bare file name of a model in a sub-folder, when unique.
    const ModelEntry* only = nullptr;
    int hits = 0;
    for (const auto& e : entries_) {
        const std::string base = e.name.substr(e.name.find_last_of('/') + 1);
        if (base == name || strip_ext(base) == name) {
            only = &e;
            ++hits;
        }
    }
    if (hits == 1) return usable(*only);
    // Something by that name that the scan skipped because it is no model file (a symlink loop, a FIFO, a
    // dangling link): say what it is rather than "not found".
    if (!dir_.empty() && hits == 0) {
        const std::string cand = (fs::path(dir_) / name).string();
        struct stat lst {}, st {};
        if (::lstat(cand.c_str(), &lst) == 0 && (::stat(cand.c_str(), &st) != 0 || (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))))
            require_model_file(cand, name, false);
    }
    std::string known;
    for (size_t i = 0; i < entries_.size() && i < 8; ++i) known += (i ? ", " : "") + entries_[i].name;
    if (entries_.size() > 8) known += ", ...";
    fail(ErrorCode::NotFound, "model '", requested, "' not found", hits > 1 ? " (ambiguous)" : "",
         "; available: ", known.empty() ? "none" : known);
}

ModelEntry ModelStore::default_model() const {
    std::string def;
    {
        std::lock_guard<std::mutex> lock(mu_);
        def = default_;
    }
    if (!def.empty()) {
        try {
            return resolve(def);
        } catch (const Error&) {  // the file went away: fall back to the list
        }
    }
    std::lock_guard<std::mutex> lock(mu_);
    rescan_locked();
    NUANCE_CHECK_CODE(!entries_.empty(), NotFound, "no model available: the models dir '", dir_,
                      "' has no .safetensors/.ckpt file or diffusers folder");
    return entries_.front();
}

void ModelStore::set_default(const std::string& name) {
    const ModelEntry e = resolve(name);
    std::lock_guard<std::mutex> lock(mu_);
    default_ = e.name;
}

void ModelStore::set_hash(const std::string& name, const std::string& sha256) {
    std::lock_guard<std::mutex> lock(mu_);
    hashes_[name] = sha256;
}

std::optional<std::string> ModelStore::hash(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hashes_.find(name);
    if (it == hashes_.end()) return std::nullopt;
    return it->second;
}

std::string ModelStore::title(const ModelEntry& e) const {
    const auto h = hash(e.name);
    return h ? e.name + " [" + h->substr(0, 10) + "]" : e.name;
}

LoraStore::LoraStore(std::string dir) : dir_(std::move(dir)) {
    if (enabled()) refresh();
}

std::shared_ptr<const LoraLibrary> LoraStore::library() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lib_;
}

void LoraStore::refresh() {
    if (!enabled()) return;
    auto lib = std::make_shared<const LoraLibrary>(LoraLibrary::scan(dir_));
    std::lock_guard<std::mutex> lock(mu_);
    lib_ = std::move(lib);
}

}  // namespace nuance::server
