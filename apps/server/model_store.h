// The models a server may load: one file given with -m, and/or the checkpoints found in --models-dir.
// A request names a model; the name resolves only to an entry of this list, so no request can make the server
// open a path of its choosing (no "../", no absolute paths).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora_library.h"

namespace nuance::server {

struct ModelEntry {
    std::string name;  // what requests use: path relative to the models dir with '/' ("sd15.safetensors", "xl/a.ckpt")
    std::string stem;  // name without the extension (A1111 "model_name")
    std::string path;  // file system path the loader opens
    bool folder = false;  // a diffusers folder (model_index.json)
};

class ModelStore {
public:
    // Either may be empty, not both. A missing models dir is an Error (NotFound).
    ModelStore(std::string single_model, std::string models_dir);

    // Current list (the models dir is rescanned at most once a second), sorted by name; -m first.
    std::vector<ModelEntry> list() const;

    // By name, by stem, or by A1111 title "name [hash]". Names with "..", absolute paths, backslashes or control
    // characters -> Error InvalidArgument; unknown -> Error NotFound listing a few known names.
    ModelEntry resolve(const std::string& name) const;

    // The model used when a request names none: -m, else what POST /sdapi/v1/options set, else the first listed.
    // Error (NotFound) when there is no model at all.
    ModelEntry default_model() const;
    void set_default(const std::string& name);  // resolves first (so it throws like resolve())

    // Model hashes (SHA-256, hex) are known once a model was loaded; A1111 shows the first 10 digits.
    void set_hash(const std::string& name, const std::string& sha256);
    std::optional<std::string> hash(const std::string& name) const;
    std::string title(const ModelEntry& e) const;  // "name [0123456789]" or "name"

    const std::string& models_dir() const { return dir_; }

private:
    void rescan_locked() const;

    std::string single_, dir_;
    mutable std::mutex mu_;
    mutable std::vector<ModelEntry> entries_;
    mutable int64_t scanned_at_ms_ = -1;
    std::string default_;
    std::map<std::string, std::string> hashes_;
};

// The LoRAs of --lora-dir (GET /sdapi/v1/loras, <lora:name:w> in request prompts): scanned at start and by
// refresh() (POST /sdapi/v1/refresh-loras). A request names a LoRA; the name resolves only to an entry of this list.
class LoraStore {
public:
    explicit LoraStore(std::string dir);  // "" = no LoRAs; a missing folder is an Error (NotFound)
    bool enabled() const { return !dir_.empty(); }
    const std::string& dir() const { return dir_; }
    std::shared_ptr<const LoraLibrary> library() const;  // null when disabled
    void refresh();

private:
    std::string dir_;
    mutable std::mutex mu_;
    std::shared_ptr<const LoraLibrary> lib_;
};

}  // namespace nuance::server
