#include "defaults.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/png_meta.h"
#include "pipelines/generate_defaults.h"

namespace nuance::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxCached = 10000;             // models (the store lists at most this many)
constexpr size_t kMaxScanned = 200000;           // files looked at in the output folder
constexpr uintmax_t kMaxOutputBytes = 64u << 20;  // a saved output larger than this is not served or parsed

// Changes when the file (a diffusers folder: its model_index.json, where the defaults block lives) changes.
std::string file_stamp(const std::string& model_path) {
    std::error_code ec;
    const std::string path = fs::is_directory(model_path, ec) ? model_path + "/model_index.json" : model_path;
    const auto t = fs::last_write_time(path, ec);
    const uintmax_t size = fs::is_regular_file(path, ec) ? fs::file_size(path, ec) : 0;
    return str(t.time_since_epoch().count(), ":", size);
}

std::string read_file_bounded(const std::string& path, uintmax_t limit) {
    std::error_code ec;
    NUANCE_CHECK_CODE(fs::is_regular_file(path, ec), NotFound, "no saved output '", fs::path(path).filename().string(), "'");
    const uintmax_t size = fs::file_size(path, ec);
    NUANCE_CHECK_CODE(!ec && size <= limit, Io, "saved output '", fs::path(path).filename().string(), "' is ", size,
                      " bytes (limit ", limit, ")");
    std::ifstream f(path, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), Io, "cannot read saved output '", fs::path(path).filename().string(), "'");
    std::string s((size_t)size, '\0');
    f.read(s.data(), (std::streamsize)size);
    s.resize((size_t)f.gcount());
    return s;
}

// The leading number of "NNNNN-....png"; false for other names.
bool output_number(const std::string& name, uint64_t& n) {
    if (!OutputDir::valid_name(name)) return false;
    n = 0;
    for (char c : name) {
        if (c == '-') return true;
        n = n * 10 + (uint64_t)(c - '0');
    }
    return false;
}

}  // namespace

void apply_defaults(GenerateParams& p, const GenerationDefaults& d) { apply_generation_defaults(p, d); }

nlohmann::json defaults_json(const GenerationDefaults& d) {
    return {{"width", d.width},         {"height", d.height},
            {"steps", d.steps},         {"cfg_scale", d.cfg_scale},
            {"sampler", d.sampler},     {"scheduler", d.scheduler.empty() ? "automatic" : d.scheduler},
            {"prompt", d.prompt},       {"negative_prompt", d.negative_prompt}};
}

std::optional<GenerationDefaults> DefaultsCache::get(const std::string& path, std::string* error) {
    const std::string stamp = file_stamp(path);
    {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = entries_.find(path);
        if (it != entries_.end() && it->second.stamp == stamp) {
            if (error) *error = it->second.error;
            return it->second.d;
        }
    }
    Entry e;
    e.stamp = stamp;
    try {
        e.d = probe_generation_defaults(path);
    } catch (const std::exception& ex) {
        e.error = ex.what();
    }
    if (error) *error = e.error;
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= kMaxCached) entries_.clear();
    entries_[path] = e;
    return e.d;
}

void DefaultsCache::put(const std::string& path, const GenerationDefaults& d) {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.size() >= kMaxCached) entries_.clear();
    entries_[path] = Entry{file_stamp(path), d, ""};
}

OutputDir::OutputDir(std::string dir) : dir_(std::move(dir)) {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::create_directories(dir_, ec);
    NUANCE_CHECK_CODE(fs::is_directory(dir_, ec), Io, "--output-dir '", dir_, "' is not a folder and cannot be created",
                      ec ? ": " + ec.message() : std::string());
}

bool OutputDir::valid_name(const std::string& name) {
    // "NNNNN-SEED.png": 1..12 digits, '-', 1..20 digits, ".png". Nothing else is served (no paths, no dot files).
    const size_t dash = name.find('-');
    if (dash == std::string::npos || dash == 0 || dash > 12 || name.size() < dash + 6) return false;
    if (name.compare(name.size() - 4, 4, ".png") != 0) return false;
    const size_t seed_len = name.size() - 4 - dash - 1;
    if (seed_len == 0 || seed_len > 20) return false;
    for (size_t i = 0; i < name.size() - 4; ++i)
        if (i != dash && (name[i] < '0' || name[i] > '9')) return false;
    return true;
}

std::vector<std::pair<uint64_t, std::string>> OutputDir::scan() const {
    std::vector<std::pair<uint64_t, std::string>> out;
    std::error_code ec;
    fs::directory_iterator it(dir_, fs::directory_options::skip_permission_denied, ec), end;
    size_t seen = 0;
    for (; !ec && it != end && seen < kMaxScanned; it.increment(ec), ++seen) {
        const std::string name = it->path().filename().string();
        uint64_t n = 0;
        std::error_code ec2;
        if (output_number(name, n) && it->is_regular_file(ec2)) out.emplace_back(n, name);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second > b.second; });
    return out;
}

std::string OutputDir::save(const std::string& png, int64_t seed) {
    NUANCE_CHECK_CODE(enabled(), Internal, "saving an output without --output-dir");
    std::lock_guard<std::mutex> lock(mu_);
    if (next_ == 0) {
        const auto all = scan();
        next_ = all.empty() ? 1 : all.front().first + 1;
    }
    char name[64];
    std::snprintf(name, sizeof name, "%05llu-%lld.png", (unsigned long long)next_, (long long)(seed < 0 ? 0 : seed));
    write_file_atomic(dir_ + "/" + name, [&](FILE* f) { return std::fwrite(png.data(), 1, png.size(), f) == png.size(); });
    ++next_;
    return name;
}

std::vector<OutputDir::Item> OutputDir::list(size_t offset, size_t limit, size_t& total) const {
    std::vector<Item> out;
    total = 0;
    if (!enabled()) return out;
    const auto all = scan();
    total = all.size();
    for (size_t i = offset; i < all.size() && out.size() < limit; ++i) {
        Item item;
        item.name = all[i].second;
        const std::string path = dir_ + "/" + item.name;
        std::error_code ec;
        item.mtime = (double)std::chrono::duration_cast<std::chrono::seconds>(
                         fs::last_write_time(path, ec).time_since_epoch()).count();
        try {
            const std::string png = read_file_bounded(path, kMaxOutputBytes);
            const auto* d = reinterpret_cast<const uint8_t*>(png.data());
            if (png.size() >= 24) {
                item.width = (int)((uint32_t)d[16] << 24 | (uint32_t)d[17] << 16 | (uint32_t)d[18] << 8 | d[19]);
                item.height = (int)((uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23]);
            }
            for (const auto& [k, v] : parse_png_text(d, png.size(), item.name))
                if (k == "parameters") item.infotext = v;
        } catch (const std::exception&) {  // a damaged file is still listed, without parameters
        }
        out.push_back(std::move(item));
    }
    return out;
}

std::string OutputDir::read(const std::string& name) const {
    NUANCE_CHECK(valid_name(name), "'", name, "' is not the name of a saved output (NNNNN-SEED.png)");
    NUANCE_CHECK_CODE(enabled(), NotFound, "this server does not save outputs (start it with --output-dir DIR)");
    return read_file_bounded(dir_ + "/" + name, kMaxOutputBytes);
}

}  // namespace nuance::server
