// How people name LoRAs: A1111's prompt tags (<lora:name:0.8>), a folder of files (--lora-dir), --lora FILE:weight,
// and the "Lora hashes" infotext A1111 writes; and applying such a list to a loaded DiffusionModel.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "adapters/lora.h"

namespace nuance {

class DiffusionModel;

// One <lora:...> (or <lyco:...>) tag. A1111's forms: <lora:name>, <lora:name:w> (text encoder and UNet both w),
// <lora:name:te:unet>, and named te=, unet= (dyn= is accepted and ignored).
struct LoraTag {
    std::string name;
    float te = 1.0f, unet = 1.0f;
    std::string text;  // the tag as written
};

// Every tag in `prompt`, in order. Errors name the tag: an empty name, a weight that is no finite number, a
// weight outside [-100, 100], more than 64 tags.
std::vector<LoraTag> parse_lora_tags(const std::string& prompt);
// `prompt` without its <lora:...> / <lyco:...> tags (A1111 removes extra-network tags before encoding).
std::string strip_lora_tags(const std::string& prompt);

// "FILE" or "FILE:weight" (--lora): the weight is the part after the last ':' when it is a number.
LoraTag parse_lora_flag(const std::string& arg);

// The LoRA files of a folder (--lora-dir): *.safetensors, *.pt, *.ckpt, searched recursively (at most 10000 files,
// 8 levels), named by file stem as A1111 does (the first in path order wins a name clash).
struct LoraEntry {
    std::string name, path;
    std::string alias;     // metadata ss_output_name when present, else the name (A1111's alias)
    std::string relative;  // path relative to the folder, '/'-separated (what the server shows)
    std::map<std::string, std::string> metadata;  // safetensors __metadata__ (empty for .pt/.ckpt)
};

class LoraLibrary {
public:
    LoraLibrary() = default;
    static LoraLibrary scan(const std::string& dir);  // Error (NotFound) when dir is not a folder
    const std::string& dir() const { return dir_; }
    const std::vector<LoraEntry>& entries() const { return entries_; }
    // The entry named `name` (case-sensitive first, then case-insensitive, then by alias). Error (NotFound) naming
    // the folder and the closest names otherwise.
    const LoraEntry& find(const std::string& name) const;

private:
    std::string dir_;
    std::vector<LoraEntry> entries_;
};

// A1111's LoRA short hash: metadata sshs_model_hash when present, else the sha256 of a safetensors file's data
// after its header ("addnet" hash), else of the whole file; first 12 hex digits. Kept per (path, size, mtime).
std::string lora_short_hash(const std::string& path);

// A LoRA to apply: a file, the name it is mentioned by (infotext), the strengths.
struct LoraUse {
    std::string path, name;
    float te = 1.0f, unet = 1.0f;
};

// The prompt's tags resolved against `lib` (a tag with no library is an error naming the tag and --lora-dir).
std::vector<LoraUse> resolve_lora_tags(const std::vector<LoraTag>& tags, const LoraLibrary* lib);

// Merges every LoRA into the model (via its modules()), stacking; `merge` keeps the originals for restore().
// Returns the value of A1111's "Lora hashes" infotext field ("name: hash, name2: hash2"; "" for none); warnings
// (more than half of a file unmatched) go to *warnings.
std::string apply_loras(DiffusionModel& m, const std::vector<LoraUse>& uses, LoraMerge& merge,
                        std::vector<std::string>* warnings = nullptr);

// ", Lora hashes: \"...\"" for the infotext (A1111 quotes values with ':' or ','), or "".
std::string lora_hashes_infotext(const std::string& hashes);

}  // namespace nuance
