// JSON files that come with models (diffusers model_index.json / config.json / *.index.json, tokenizer configs):
// read as hostile input. The file must be a regular file (never blocks on a FIFO) of bounded size, the JSON is
// nested at most kMaxJsonDepth deep (copies and dumps of nlohmann values recurse), and every error names the file.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nuance {

constexpr size_t kMaxJsonFileBytes = 64u << 20;
constexpr int kMaxJsonDepth = 128;

// The parsed file; throws naming `path` when it is missing, not a regular file, too big, not JSON or too deep.
nlohmann::json read_json_file(const std::string& path);
// Same, and the top level must be an object: "'<path>' is not a JSON object (it is an array)".
nlohmann::json read_json_object(const std::string& path);
// nullopt when nothing exists at `path` (a documented optional file); anything else there must be a regular file
// holding a JSON object, or this throws naming it (a folder, a FIFO, a dangling or looping symlink, bad JSON).
std::optional<nlohmann::json> read_optional_json_object(const std::string& path);

// Parses JSON text with the same depth limit; `name` is used in messages.
nlohmann::json parse_json_text(const std::string& text, const std::string& name);
// The same for callers that name the text themselves (a manifest line): throws "not valid JSON (<detail>)" or
// "JSON nested deeper than 128 levels".
nlohmann::json parse_json_bounded(const std::string& text);

}  // namespace nuance
