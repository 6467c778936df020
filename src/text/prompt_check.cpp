#include "text/prompt_check.h"

#include <cstdint>
#include <cstdio>

#include "core/error.h"

namespace nuance {

size_t utf8_error_offset(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return std::string::npos;
}

void check_prompt_text(const std::string& s, const std::string& what) {
    NUANCE_CHECK(s.size() <= kMaxPromptBytes, what, " is ", s.size(), " bytes long, over the limit of ",
                 kMaxPromptBytes, " bytes");
    const size_t nul = s.find('\0');
    NUANCE_CHECK(nul == std::string::npos, what, " contains a NUL byte at offset ", nul);
    const size_t bad = utf8_error_offset(s);
    if (bad != std::string::npos) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", (unsigned)(unsigned char)s[bad]);
        fail(ErrorCode::InvalidArgument, what, " is not valid UTF-8: byte ", hex, " at offset ", bad);
    }
}

}  // namespace nuance
