#include "adapters/lora_library.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <tuple>
#include <openssl/evp.h>

#include "io/safetensors.h"
#include "io/weights.h"
#include "models/diffusion_model.h"

namespace nuance {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxTags = 64;
constexpr size_t kMaxFiles = 10000;

bool parse_weight(const std::string& s, float* out) {
    if (s.empty() || s.size() > 32) return false;
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
    *out = (float)v;
    return true;
}

std::string trim(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace((unsigned char)s[a])) ++a;
    while (b > a && std::isspace((unsigned char)s[b - 1])) --b;
    return s.substr(a, b - a);
}

// Calls f(begin, end, kind) for each "<lora:...>" / "<lyco:...>" in s ([begin, end) covers the whole tag).
template <class F>
void for_each_tag(const std::string& s, F f) {
    size_t pos = 0;
    while ((pos = s.find('<', pos)) != std::string::npos) {
        const bool lora = s.compare(pos, 6, "<lora:") == 0, lyco = s.compare(pos, 6, "<lyco:") == 0;
        const size_t close = s.find('>', pos);
        if ((!lora && !lyco) || close == std::string::npos) {
            ++pos;
            continue;
        }
        f(pos, close + 1);
        pos = close + 1;
    }
}

std::string lower(std::string s) {
    for (char& c : s) c = (char)std::tolower((unsigned char)c);
    return s;
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string hex(const unsigned char* md, unsigned len) {
    static const char* h = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s.push_back(h[md[i] >> 4]);
        s.push_back(h[md[i] & 15]);
    }
    return s;
}

std::string sha256_of(const uint8_t* p, size_t n) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    NUANCE_CHECK_CODE(ctx != nullptr, OutOfMemory, "sha256: no context");
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    const size_t chunk = 64 << 20;
    for (size_t off = 0; off < n; off += chunk) EVP_DigestUpdate(ctx, p + off, std::min(chunk, n - off));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return hex(md, len);
}

}  // namespace

std::vector<LoraTag> parse_lora_tags(const std::string& prompt) {
    std::vector<LoraTag> out;
    for_each_tag(prompt, [&](size_t b, size_t e) {
        LoraTag t;
        t.text = prompt.substr(b, e - b);
        NUANCE_CHECK(out.size() < kMaxTags, "prompt: more than ", kMaxTags, " <lora:...> tags");
        const std::string body = prompt.substr(b + 6, e - b - 7);  // between "<lora:" and ">"
        std::vector<std::string> parts;
        size_t s = 0;
        for (size_t c; (c = body.find(':', s)) != std::string::npos; s = c + 1) parts.push_back(body.substr(s, c - s));
        parts.push_back(body.substr(s));
        t.name = trim(parts[0]);
        NUANCE_CHECK(!t.name.empty(), "prompt: ", t.text, " names no LoRA (expected <lora:name:weight>)");
        std::vector<float> pos;
        bool te_set = false, unet_set = false;
        for (size_t i = 1; i < parts.size(); ++i) {
            const std::string a = trim(parts[i]);
            const size_t eq = a.find('=');
            float v = 0;
            if (eq != std::string::npos) {
                const std::string key = trim(a.substr(0, eq)), val = trim(a.substr(eq + 1));
                if (key == "dyn") continue;
                NUANCE_CHECK(key == "te" || key == "unet", "prompt: ", t.text, ": unknown argument '", key,
                             "' (expected te=, unet= or dyn=)");
                NUANCE_CHECK(parse_weight(val, &v), "prompt: ", t.text, ": ", key, " weight '", val,
                             "' is not a number");
                (key == "te" ? t.te : t.unet) = v;
                (key == "te" ? te_set : unet_set) = true;
                continue;
            }
            NUANCE_CHECK(parse_weight(a, &v), "prompt: ", t.text, ": weight '", a, "' is not a number");
            pos.push_back(v);
        }
        NUANCE_CHECK(pos.size() <= 2, "prompt: ", t.text, ": at most two weights (text encoder, UNet)");
        if (!pos.empty() && !te_set) t.te = pos[0];
        if (!unet_set) t.unet = pos.size() > 1 ? pos[1] : (pos.empty() ? t.te : pos[0]);
        for (float w : {t.te, t.unet})
            NUANCE_CHECK(w >= -100 && w <= 100, "prompt: ", t.text, ": weight ", w, " is outside [-100, 100]");
        out.push_back(t);
    });
    return out;
}

std::string strip_lora_tags(const std::string& prompt) {
    std::string out;
    size_t last = 0;
    for_each_tag(prompt, [&](size_t b, size_t e) {
        out.append(prompt, last, b - last);
        last = e;
    });
    out.append(prompt, last, std::string::npos);
    return out;
}

LoraTag parse_lora_flag(const std::string& arg) {
    LoraTag t;
    t.text = arg;
    t.name = arg;
    const size_t c = arg.rfind(':');
    float w = 0;
    if (c != std::string::npos && parse_weight(arg.substr(c + 1), &w)) {
        t.name = arg.substr(0, c);
        NUANCE_CHECK(w >= -100 && w <= 100, "--lora '", arg, "': weight ", w, " is outside [-100, 100]");
        t.te = t.unet = w;
    }
    NUANCE_CHECK(!t.name.empty(), "--lora '", arg, "' names no file (expected FILE or FILE:weight)");
    return t;
}

LoraLibrary LoraLibrary::scan(const std::string& dir) {
    NUANCE_CHECK_CODE(is_directory(dir), NotFound, "--lora-dir '", dir, "' is not a folder");
    LoraLibrary lib;
    lib.dir_ = dir;
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
        if (ext != ".safetensors" && ext != ".pt" && ext != ".ckpt") continue;
        NUANCE_CHECK(files.size() < kMaxFiles, "--lora-dir '", dir, "' holds more than ", kMaxFiles, " LoRA files");
        files.push_back(it->path().string());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        const std::string name = stem(f);
        if (std::any_of(lib.entries_.begin(), lib.entries_.end(), [&](const LoraEntry& e) { return e.name == name; }))
            continue;
        LoraEntry e;
        e.name = e.alias = name;
        e.path = f;
        e.relative = fs::path(f).lexically_relative(dir).generic_string();
        if (is_safetensors_file(f)) {
            try {
                e.metadata = load_safetensors(f).metadata;
            } catch (const Error&) {  // listed; loading it later says what is wrong
            }
            auto it = e.metadata.find("ss_output_name");
            if (it != e.metadata.end() && !it->second.empty() && it->second.size() < 256) e.alias = it->second;
        }
        lib.entries_.push_back(std::move(e));
    }
    return lib;
}

const LoraEntry& LoraLibrary::find(const std::string& name) const {
    for (const auto& e : entries_)
        if (e.name == name) return e;
    const LoraEntry* ci = nullptr;
    for (const auto& e : entries_)
        if (lower(e.name) == lower(name)) {
            NUANCE_CHECK(!ci, "LoRA '", name, "' matches both '", ci->name, "' and '", e.name, "' in --lora-dir '",
                         dir_, "' (names differ only in case)");
            ci = &e;
        }
    if (ci) return *ci;
    for (const auto& e : entries_)
        if (e.alias == name) return e;
    std::vector<std::pair<size_t, std::string>> near;
    const std::string ln = lower(name);
    for (const auto& e : entries_) {
        const std::string le = lower(e.name);
        size_t d = edit_distance(ln, le);
        if (le.find(ln) != std::string::npos || ln.find(le) != std::string::npos) d = std::min<size_t>(d, 1);
        if (d <= std::max<size_t>(3, ln.size() / 3)) near.push_back({d, e.name});
    }
    std::sort(near.begin(), near.end());
    std::string s;
    for (size_t i = 0; i < near.size() && i < 5; ++i) s += (i ? ", " : "") + near[i].second;
    fail(ErrorCode::NotFound, "LoRA '", name, "' is not in --lora-dir '", dir_, "' (", entries_.size(), " LoRAs",
         s.empty() ? std::string() : "; close names: " + s, ")");
}

namespace {
std::string lora_short_hash_uncached(const std::string& path);
}  // namespace

std::string lora_short_hash(const std::string& path) {
    static std::mutex mu;
    static std::map<std::string, std::tuple<uintmax_t, int64_t, std::string>> cache;
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    const int64_t mtime = ec ? 0 : (int64_t)fs::last_write_time(path, ec).time_since_epoch().count();
    {
        std::lock_guard<std::mutex> lock(mu);
        auto it = cache.find(path);
        if (!ec && it != cache.end() && std::get<0>(it->second) == size && std::get<1>(it->second) == mtime)
            return std::get<2>(it->second);
    }
    const std::string h = lora_short_hash_uncached(path);
    if (!ec) {
        std::lock_guard<std::mutex> lock(mu);
        if (cache.size() > 4096) cache.clear();
        cache[path] = {size, mtime, h};
    }
    return h;
}

namespace {
std::string lora_short_hash_uncached(const std::string& path) {
    auto st = map_file(path);
    if (is_safetensors_file(path)) {
        const WeightFile w = load_safetensors(st, path);
        auto it = w.metadata.find("sshs_model_hash");
        if (it != w.metadata.end() && it->second.size() >= 12) return it->second.substr(0, 12);
        uint64_t n = 0;
        std::memcpy(&n, st->data(), 8);  // checked by load_safetensors: 8 + n <= size
        return sha256_of(st->data() + 8 + n, st->size() - 8 - (size_t)n).substr(0, 12);
    }
    return sha256_of(st->data(), st->size()).substr(0, 12);
}
}  // namespace

std::vector<LoraUse> resolve_lora_tags(const std::vector<LoraTag>& tags, const LoraLibrary* lib) {
    std::vector<LoraUse> out;
    for (const auto& t : tags) {
        NUANCE_CHECK(lib, "prompt: ", t.text, " needs a LoRA folder (--lora-dir DIR)");
        const LoraEntry& e = lib->find(t.name);
        out.push_back({e.path, t.name, t.te, t.unet});
    }
    return out;
}

std::string apply_loras(DiffusionModel& m, const std::vector<LoraUse>& uses, LoraMerge& merge,
                        std::vector<std::string>* warnings) {
    std::string hashes;
    LoraComponents comps;
    for (const auto& [name, mod] : m.modules()) comps.push_back({name, mod});
    for (const auto& u : uses) {
        const LoraFile f = load_lora(u.path);
        const LoraApplyReport r = merge.apply(comps, f, u.unet, u.te);
        if (warnings) warnings->insert(warnings->end(), r.warnings.begin(), r.warnings.end());
        std::string alias = u.name;
        alias.erase(std::remove_if(alias.begin(), alias.end(), [](char c) { return c == ':' || c == ','; }), alias.end());
        hashes += (hashes.empty() ? "" : ", ") + alias + ": " + lora_short_hash(u.path);
    }
    return hashes;
}

std::string lora_hashes_infotext(const std::string& hashes) {
    if (hashes.empty()) return "";
    std::string q = "\"";
    for (char c : hashes) {
        if (c == '"' || c == '\\') q.push_back('\\');
        q.push_back(c);
    }
    return ", Lora hashes: " + q + "\"";
}

}  // namespace nuance
