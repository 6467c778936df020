// Per-model generation defaults for the server (models/model_defaults.h), and the saved outputs (--output-dir).
//
// Requests leave unset what the model should decide: width/height 0, steps 0, cfg_scale < 0, sampler "" (the job
// queue fills them in from the loaded model before generating). The page and clients read the defaults from
// GET /api/v1/info and GET /api/v1/models, probed from the model files without loading them and cached per file.
//
// Saved outputs are A1111-style "NNNNN-SEED.png" files (with the "parameters" chunk) in the output folder; the
// number grows with every image, so newest first is highest number first.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/model_defaults.h"
#include "pipelines/generate.h"

namespace nuance::server {

// Fills the unset fields of `p` (see above) from `d`.
void apply_defaults(GenerateParams& p, const GenerationDefaults& d);

nlohmann::json defaults_json(const GenerationDefaults& d);

// probe_generation_defaults() results keyed by path and the file's size and modification time.
class DefaultsCache {
public:
    // nullopt (and `error` set) when the model's files cannot tell.
    std::optional<GenerationDefaults> get(const std::string& path, std::string* error = nullptr);
    void put(const std::string& path, const GenerationDefaults& d);  // what a loaded model says (exact)

private:
    struct Entry {
        std::string stamp;
        std::optional<GenerationDefaults> d;
        std::string error;
    };
    std::mutex mu_;
    std::map<std::string, Entry> entries_;
};

// The output folder. Thread-safe.
class OutputDir {
public:
    explicit OutputDir(std::string dir);  // "" = outputs are not saved; else creates the folder (Error Io if it can't)
    bool enabled() const { return !dir_.empty(); }
    const std::string& dir() const { return dir_; }

    // Writes the PNG atomically; returns the file name.
    std::string save(const std::string& png, int64_t seed);

    struct Item {
        std::string name;
        double mtime = 0;
        int width = 0, height = 0;
        std::string infotext;
    };
    // Newest first; `total` = how many saved outputs there are.
    std::vector<Item> list(size_t offset, size_t limit, size_t& total) const;
    // The PNG bytes of a saved output; Error NotFound / InvalidArgument for names that are not one.
    std::string read(const std::string& name) const;

    static bool valid_name(const std::string& name);

private:
    std::vector<std::pair<uint64_t, std::string>> scan() const;  // (number, name)
    std::string dir_;
    std::mutex mu_;
    uint64_t next_ = 0;  // 0 = not scanned yet
};

}  // namespace nuance::server
