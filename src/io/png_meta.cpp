// PNG chunk walker for text metadata. Layout: PNG spec (ISO/IEC 15948) §5.3 chunks, §11.3.4 tEXt/zTXt/iTXt.
#include "io/png_meta.h"

#include <zlib.h>

#include <cstring>

#include "io/weight_file.h"
#include "text/prompt_check.h"

namespace nuance {

namespace {

constexpr uint8_t kPngSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
constexpr size_t kMaxText = 16u << 20;  // inflated text cap: a zTXt bomb cannot eat memory

uint32_t be32(const uint8_t* p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

std::string inflate_text(const uint8_t* p, size_t n, const std::string& name, const std::string& key) {
    z_stream zs{};
    NUANCE_CHECK_CODE(inflateInit(&zs) == Z_OK, OutOfMemory, "png '", name, "': inflateInit failed");
    std::string out;
    zs.next_in = const_cast<Bytef*>(p);
    zs.avail_in = (uInt)n;
    int rc = Z_OK;
    char buf[16384];
    while (rc == Z_OK) {
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
        if (out.size() > kMaxText) {
            inflateEnd(&zs);
            fail(ErrorCode::InvalidArgument, "png '", name, "': text chunk '", key, "' inflates past ", kMaxText,
                 " bytes");
        }
        if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) rc = Z_BUF_ERROR;  // input ended early
    }
    inflateEnd(&zs);
    NUANCE_CHECK(rc == Z_STREAM_END, "png '", name, "': compressed text chunk '", key, "' is corrupt");
    return out;
}

}  // namespace

bool is_ascii(const std::string& s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

bool is_valid_utf8(const std::string& s) { return utf8_error_offset(s) == std::string::npos; }

std::string latin1_to_utf8(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        if (c < 0x80) {
            out.push_back((char)c);
        } else {
            out.push_back((char)(0xC0 | c >> 6));
            out.push_back((char)(0x80 | (c & 0x3F)));
        }
    }
    return out;
}

void check_png_keyword(const std::string& key) {
    bool ok = !key.empty() && key.size() <= 79 && key.front() != ' ' && key.back() != ' ' &&
              key.find("  ") == std::string::npos;
    for (unsigned char c : key) ok = ok && c >= 32 && c <= 126;
    NUANCE_CHECK(ok, "png text keyword '", key, "' is invalid (needs 1-79 printable ASCII characters, no leading, ",
                 "trailing or double spaces)");
}

PngText parse_png_text(const uint8_t* data, size_t size, const std::string& name) {
    NUANCE_CHECK(size >= 8 && std::memcmp(data, kPngSig, 8) == 0, "'", name, "' is not a PNG file");
    PngText out;
    size_t pos = 8;
    while (true) {
        NUANCE_CHECK(size - pos >= 12, "png '", name, "': truncated file (chunk header at byte ", pos, ")");
        const uint32_t len = be32(data + pos);
        const std::string type(reinterpret_cast<const char*>(data + pos + 4), 4);
        NUANCE_CHECK(len <= 0x7FFFFFFFu && len <= size - pos - 12, "png '", name, "': chunk '", type, "' at byte ", pos,
                     " claims ", len, " bytes, past the end of the file (truncated?)");
        const uint8_t* body = data + pos + 8;
        if (type == "IEND") break;
        if (type == "tEXt" || type == "zTXt" || type == "iTXt") {
            const uint32_t crc = (uint32_t)crc32(crc32(0, nullptr, 0), data + pos + 4, len + 4);
            NUANCE_CHECK(crc == be32(body + len), "png '", name, "': chunk '", type, "' at byte ", pos,
                         " is corrupt (CRC mismatch)");
            const void* nul = std::memchr(body, 0, len);
            NUANCE_CHECK(nul != nullptr, "png '", name, "': chunk '", type, "' has no keyword terminator");
            const size_t klen = (size_t)(static_cast<const uint8_t*>(nul) - body);
            const std::string key = latin1_to_utf8(std::string(reinterpret_cast<const char*>(body), klen));
            const uint8_t* rest = body + klen + 1;
            size_t rlen = len - klen - 1;
            std::string value;
            if (type == "tEXt") {
                value = latin1_to_utf8(std::string(reinterpret_cast<const char*>(rest), rlen));
            } else if (type == "zTXt") {
                NUANCE_CHECK(rlen >= 1 && rest[0] == 0, "png '", name, "': zTXt '", key, "' has an unknown method");
                value = latin1_to_utf8(inflate_text(rest + 1, rlen - 1, name, key));
            } else {  // iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
                NUANCE_CHECK(rlen >= 2, "png '", name, "': iTXt '", key, "' is truncated");
                const bool compressed = rest[0] != 0;
                NUANCE_CHECK(!compressed || rest[1] == 0, "png '", name, "': iTXt '", key, "' has an unknown method");
                rest += 2;
                rlen -= 2;
                for (int field = 0; field < 2; ++field) {  // skip language tag and translated keyword
                    const void* z = std::memchr(rest, 0, rlen);
                    NUANCE_CHECK(z != nullptr, "png '", name, "': iTXt '", key, "' is truncated");
                    const size_t skip = (size_t)(static_cast<const uint8_t*>(z) - rest) + 1;
                    rest += skip;
                    rlen -= skip;
                }
                value = compressed ? inflate_text(rest, rlen, name, key)
                                   : std::string(reinterpret_cast<const char*>(rest), rlen);
            }
            out.emplace_back(key, std::move(value));
        }
        pos += 12 + (size_t)len;
    }
    return out;
}

PngText read_png_text(const std::string& path) {
    const auto file = map_file(path);
    return parse_png_text(file->data(), file->size(), path);
}

}  // namespace nuance
