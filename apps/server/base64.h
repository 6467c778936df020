// Base64 (RFC 4648, standard alphabet) for images in JSON bodies, and "data:image/png;base64,..." URLs.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nuance::server {

std::string base64_encode(const uint8_t* data, size_t size);
inline std::string base64_encode(const std::string& bytes) {
    return base64_encode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Accepts padded or unpadded input, ignores whitespace, and strips a leading "data:<mime>;base64," prefix.
// Anything else that is not base64 throws Error (InvalidArgument) naming `what`.
std::vector<uint8_t> base64_decode(std::string_view text, const std::string& what);

}  // namespace nuance::server
