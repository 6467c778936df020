// Request bodies -> generation parameters, for the three API families. Every field is type-checked; a wrong type,
// an out-of-range value or an unknown sampler is an Error (InvalidArgument) whose message names the field.
// A1111 and OpenAI bodies ignore unknown fields (clients send many); the native API rejects them (typos).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "io/image.h"
#include "pipelines/generate.h"

namespace nuance::server {

using nlohmann::json;

struct Limits {
    int max_side = 2048;                  // width and height
    int64_t max_pixels = 2048LL * 2048;   // width * height of an output
    int64_t max_input_pixels = 4096LL * 2048;  // init images (resized to the output size)
    int max_steps = 150;
    int max_images = 16;                  // per request (batch_size * n_iter, n, batch_count)
    size_t max_prompt = 16384;            // bytes per prompt
};

struct ParsedRequest {
    std::optional<std::string> model;  // a name to resolve in the ModelStore; nullopt = the default model
    GenerateParams params;             // width/height/steps 0, cfg_scale < 0, sampler "": the model's default
    bool send_images = true;           // A1111 send_images
    std::string response_format = "b64_json";  // OpenAI
};

// Parses JSON with a nesting limit (deep nesting is refused rather than risking the stack). Errors name the
// position. The body must be an object.
json parse_json_object(const std::string& body);

ParsedRequest parse_a1111(const json& body, bool img2img, const Limits& lim);
ParsedRequest parse_openai(const json& body, const Limits& lim);
ParsedRequest parse_native(const json& body, const Limits& lim);
// OpenAI POST /v1/images/edits (multipart/form-data): parts as (name, content). `image` (or `image[]`): PNG/JPEG;
// `mask` (optional, PNG): its fully transparent pixels are the area to edit (without a mask, the image's own
// transparent pixels); prompt, n, size, response_format and the generations extensions as text parts.
ParsedRequest parse_openai_edit(const std::vector<std::pair<std::string, std::string>>& parts, const Limits& lim);

// Base64 (or data URL) PNG/JPEG -> RGB (channels 3) or RGBA (4), refusing images over lim.max_input_pixels before
// decoding them.
Image decode_request_image(const std::string& b64, const Limits& lim, const std::string& what, int channels = 3);
// The same for raw bytes (multipart uploads).
Image decode_request_bytes(const std::vector<uint8_t>& bytes, const Limits& lim, const std::string& what,
                           int channels = 3);

// Seeds < 0 become a random non-negative seed.
int64_t resolve_seed(int64_t seed);

}  // namespace nuance::server
