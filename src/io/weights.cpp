#include "io/weights.h"

#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <set>

#include "io/ckpt.h"
#include "io/gguf.h"
#include "io/json_file.h"
#include "io/safetensors.h"

namespace nuance {

namespace fs = std::filesystem;

bool is_directory(const std::string& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

bool file_exists(const std::string& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

std::string base_name(const std::string& p) {
    std::string s = p;
    while (s.size() > 1 && s.back() == '/') s.pop_back();
    const auto k = s.find_last_of('/');
    return k == std::string::npos ? s : s.substr(k + 1);
}

std::string stem(const std::string& p) {
    const std::string b = base_name(p);
    const auto k = b.find('.');
    return k == std::string::npos || k == 0 ? b : b.substr(0, k);
}

bool path_exists(const std::string& p) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(p, ec));
}

std::string find_first_file(const std::string& dir, const std::vector<std::string>& names) {
    for (const auto& n : names)
        if (path_exists(dir + "/" + n)) return dir + "/" + n;
    return "";
}

WeightFormat detect_weight_format(const std::string& path) {
    const std::string b = read_file_prefix(path, 16);  // never blocks, "" for anything but a regular file
    const size_t n = b.size();
    if (n >= 4 && b.compare(0, 4, "PK\x03\x04", 4) == 0) return WeightFormat::TorchZip;
    if (n >= 4 && b.compare(0, 4, "GGUF", 4) == 0) return WeightFormat::Gguf;
    if (n >= 9 && b[8] == '{' && is_safetensors_file(path)) return WeightFormat::Safetensors;
    if (n >= 1 && b[0] == '{') return WeightFormat::ShardIndex;
    return WeightFormat::Unknown;
}

namespace {

constexpr size_t kMaxShards = 10000;

WeightFile load_weight_file(const std::string& path, bool allow_index);

// A `*.safetensors.index.json` (transformers / diffusers save_pretrained): {"weight_map": {tensor: shard file}}.
// Shards are plain weight files in the same folder; an index naming an index (itself, another one, a cycle) is
// refused instead of followed, so loading is one level deep whatever the files say.
WeightFile load_shard_index(const std::string& path) {
    const nlohmann::json j = read_json_object(path);
    NUANCE_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), "'", path,
                 "' is not a sharded checkpoint index (no weight_map)");
    const std::string dir = fs::path(path).parent_path().string();
    std::set<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        NUANCE_CHECK(it.value().is_string(), "'", path, "': weight_map entry '", it.key(), "' is not a file name");
        const std::string shard = it.value().get<std::string>();
        NUANCE_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..", "'",
                     path, "': shard name '", shard, "' must be a plain file name");
        shards.insert(shard);
        NUANCE_CHECK(shards.size() <= kMaxShards, "'", path, "' names more than ", kMaxShards, " shard files");
    }
    WeightFile out;
    out.path = path;
    for (const auto& s : shards) {
        const std::string sp = dir.empty() ? s : dir + "/" + s;
        std::error_code ec;
        NUANCE_CHECK(!fs::equivalent(sp, path, ec), "'", path, "': weight_map names the index itself ('", s,
                     "') as a shard");
        require_regular_file(sp, str("shard of '", path, "':").c_str());
        NUANCE_CHECK(detect_weight_format(sp) != WeightFormat::ShardIndex, "'", path, "': shard '", s,
                     "' is itself a shard index (nested or cyclic indexes are not supported)");
        WeightFile part = load_weight_file(sp, /*allow_index=*/false);
        for (auto& [k, v] : part.tensors) {
            NUANCE_CHECK(!out.tensors.count(k), "'", path, "': tensor '", k, "' appears in more than one shard");
            out.tensors[k] = v;
        }
    }
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it)
        NUANCE_CHECK(out.tensors.count(it.key()), "'", path, "': tensor '", it.key(), "' is not in shard '",
                     it.value().get<std::string>(), "'");
    return out;
}

WeightFile load_weight_file(const std::string& path, bool allow_index) {
    require_regular_file(path, "model file");
    switch (detect_weight_format(path)) {
        // FP8 matrices stay as their mmap'd bytes (flux1-dev-fp8: 12 GB in memory, not 24 GB of F16); products and
        // lookups widen them as they run, module loading widens the rest (core/quantized_weight.h).
        case WeightFormat::Safetensors: return load_safetensors(path, Fp8Load::KeepMatrices);
        case WeightFormat::TorchZip: return load_ckpt(path);
        case WeightFormat::Gguf: return load_gguf(path, /*keep_quantized=*/true);
        case WeightFormat::ShardIndex:
            NUANCE_CHECK(allow_index, "'", path, "' is a shard index where a weight file was expected");
            return load_shard_index(path);
        case WeightFormat::Unknown: break;
    }
    // Legacy (pre-1.6) torch.save files are a bare pickle stream: torchvision's and the lpips package's weights.
    if (const std::string b = read_file_prefix(path, 2); b.size() == 2 && (uint8_t)b[0] == 0x80 && (uint8_t)b[1] <= 5)
        return load_ckpt(path);
    // A file that claims to be safetensors by name gets the safetensors loader's precise complaint.
    if (path.size() > 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0) return load_safetensors(path);
    fail(ErrorCode::Unsupported, "'", path,
         "' is not a recognised weight file (expected safetensors, GGUF, a torch .ckpt/.pt/.pth (zip or legacy), or "
         "a .index.json)");
}

}  // namespace

WeightFile load_weights(const std::string& path) { return load_weight_file(path, /*allow_index=*/true); }

std::string file_sha256(const std::string& path) {
    auto st = map_file(path);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    NUANCE_CHECK_CODE(ctx != nullptr, OutOfMemory, "sha256: no context");
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    // Read through the mapping a chunk at a time, each chunk's pages let go once hashed: the process never holds
    // the whole file (a 6.9 GB SDXL checkpoint used to add 6.9 GB to the peak RSS of the run that hashed it).
    const size_t chunk = 64 << 20;  // a multiple of the page size; the mapping starts on a page
    for (size_t off = 0; off < st->size(); off += chunk) {
        const size_t n = std::min(chunk, st->size() - off);
        EVP_DigestUpdate(ctx, st->data() + off, n);
        const size_t whole = n / 4096 * 4096;  // (pages of 4 KiB or a multiple: madvise rounds within the chunk)
        if (whole > 0) madvise(const_cast<uint8_t*>(st->data() + off), whole, MADV_DONTNEED);
    }
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    static const char* hex = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < len; ++i) {
        s.push_back(hex[md[i] >> 4]);
        s.push_back(hex[md[i] & 15]);
    }
    return s;
}

}  // namespace nuance
