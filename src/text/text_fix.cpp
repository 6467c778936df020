#include "text/text_fix.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "text/unicode.h"
#include "text/unicode_tables.h"

namespace nuance::text {

namespace {

namespace t = unicode::tables;

// Windows-1252 bytes 0x80..0x9F; 0 where the code page leaves the byte undefined (ftfy's
// "sloppy" codec then maps the byte to the C1 control of the same value).
constexpr char32_t kCp1252High[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

char32_t sloppy_1252_decode(uint8_t b) {
    if (b >= 0x80 && b < 0xA0 && kCp1252High[b - 0x80]) return kCp1252High[b - 0x80];
    return b;
}

// Byte of c in sloppy Windows-1252, or -1 when c has none.
int sloppy_1252_encode(char32_t c) {
    if (c < 0x80 || (c >= 0xA0 && c <= 0xFF)) return static_cast<int>(c);
    if (c >= 0x80 && c < 0xA0) return kCp1252High[c - 0x80] ? -1 : static_cast<int>(c);
    for (int i = 0; i < 32; ++i)
        if (kCp1252High[i] == c) return 0x80 + i;
    return -1;
}

bool is_ascii_alnum(char32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void append_utf8_string(std::u32string& out, const char* utf8) {
    out += unicode::decode_utf8(utf8);
}

// html.unescape() of one numeric reference "&#...;" as ftfy applies it: the whole match must be
// consumed, else the text is left alone.
std::optional<std::u32string> numeric_entity(std::u32string_view m) {
    // m = "&#" body ";"
    std::u32string_view body = m.substr(2, m.size() - 3);
    if (body.empty()) return std::nullopt;
    uint64_t num = 0;
    bool hex = body[0] == 'x' || body[0] == 'X';
    if (hex) body.remove_prefix(1);
    if (body.empty()) return std::nullopt;
    for (char32_t c : body) {
        int d;
        if (c >= '0' && c <= '9') d = static_cast<int>(c - '0');
        else if (hex && c >= 'a' && c <= 'f') d = static_cast<int>(c - 'a' + 10);
        else if (hex && c >= 'A' && c <= 'F') d = static_cast<int>(c - 'A' + 10);
        else return std::nullopt;  // html.unescape would stop early: ftfy keeps the text
        num = num * (hex ? 16 : 10) + d;
        if (num > 0x7FFFFFFF) num = 0x7FFFFFFF;  // anything above U+10FFFF behaves alike
    }
    std::u32string r;
    if (num == 0) r = U"\uFFFD";
    else if (num == 0x0D) r = U"\r";
    else if (num >= 0x80 && num < 0xA0) r = std::u32string(1, sloppy_1252_decode(static_cast<uint8_t>(num)));
    else if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) r = U"\uFFFD";
    else if ((num >= 0x1 && num <= 0x8) || num == 0xB || (num >= 0xE && num <= 0x1F) || num == 0x7F ||
             (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE) r = U"";
    else r = std::u32string(1, static_cast<char32_t>(num));
    if (r.find(U';') != std::u32string::npos) return std::nullopt;  // "&#59;" stays as it is
    return r;
}

// ftfy.fixes.unescape_html: replaces matches of &#?[0-9A-Za-z]{1,24};
std::u32string unescape_html(std::u32string_view s) {
    if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
    std::u32string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        if (s[i] != '&') { out.push_back(s[i++]); continue; }
        size_t j = i + 1;
        const bool numeric = j < s.size() && s[j] == '#';
        if (numeric) ++j;
        size_t k = j;
        while (k < s.size() && k - j < 24 && is_ascii_alnum(s[k])) ++k;
        if (k == j || k >= s.size() || s[k] != ';') { out.push_back(s[i++]); continue; }
        const std::u32string_view m = s.substr(i, k + 1 - i);
        // named entities (the table also has the upper-cased variants ftfy adds)
        std::string key;
        for (char32_t c : m) key.push_back(static_cast<char>(c));  // ASCII only by construction
        const t::NamedEntity* b = t::kHtmlEntities;
        const t::NamedEntity* e = b + t::kNumHtmlEntities;
        const t::NamedEntity* it = std::lower_bound(
            b, e, key, [](const t::NamedEntity& x, const std::string& v) { return std::strcmp(x.name, v.c_str()) < 0; });
        if (it != e && key == it->name) {
            append_utf8_string(out, it->utf8);
        } else if (numeric) {
            if (auto r = numeric_entity(m)) out += *r;
            else out += m;
        } else {
            out += m;
        }
        i = k + 1;
    }
    return out;
}

// Strict UTF-8 decode of bytes; nullopt when they are not valid UTF-8.
std::optional<std::u32string> decode_strict(const std::string& bytes) {
    std::u32string r = unicode::decode_utf8(bytes);
    // decode_utf8 only produces U+FFFD for invalid input unless the input encodes U+FFFD itself
    const std::string back = unicode::encode_utf8(r);
    if (back != bytes) return std::nullopt;
    return r;
}

// One round of mojibake repair (see text_fix.h).
std::u32string fix_encoding_step(const std::u32string& s) {
    bool ascii = true, latin1 = true, cp1252 = true;
    for (char32_t c : s) {
        if (c >= 0x80) ascii = false;
        if (c > 0xFF) latin1 = false;
        if (sloppy_1252_encode(c) < 0) cp1252 = false;
    }
    if (ascii) return s;
    for (int pass = 0; pass < 2; ++pass) {  // ftfy tries latin-1 first, then sloppy-windows-1252
        if (pass == 0 ? !latin1 : !cp1252) continue;
        std::string bytes;
        bytes.reserve(s.size());
        for (char32_t c : s) bytes.push_back(static_cast<char>(pass == 0 ? c : sloppy_1252_encode(c)));
        if (auto r = decode_strict(bytes)) return *r;
    }
    // Embedded sequences: a lead byte then its continuation bytes, all as Windows-1252 chars.
    std::u32string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const int b0 = sloppy_1252_encode(s[i]);
        int len = 0;
        if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
        else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3;
        else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4;
        if (len && i + len <= s.size()) {
            std::string bytes(1, static_cast<char>(b0));
            for (int k = 1; k < len; ++k) {
                const int b = sloppy_1252_encode(s[i + k]);
                if (b < 0x80 || b > 0xBF) break;
                bytes.push_back(static_cast<char>(b));
            }
            if (static_cast<int>(bytes.size()) == len) {
                if (auto r = decode_strict(bytes)) {
                    out += *r;
                    i += len;
                    continue;
                }
            }
        }
        out.push_back(s[i++]);
    }
    return out;
}

std::u32string fix_encoding(std::u32string s) {
    for (int iter = 0; iter < 8; ++iter) {
        std::u32string next = fix_encoding_step(s);
        if (next == s) break;
        s = std::move(next);
    }
    return s;
}

const char32_t* ligature(char32_t c) {
    switch (c) {
        case 0x132: return U"IJ";
        case 0x133: return U"ij";
        case 0x149: return U"\u02BCn";
        case 0x1F1: return U"DZ";
        case 0x1F2: return U"Dz";
        case 0x1F3: return U"dz";
        case 0x1C4: return U"D\u017D";
        case 0x1C5: return U"D\u017E";
        case 0x1C6: return U"d\u017E";
        case 0x1C7: return U"LJ";
        case 0x1C8: return U"Lj";
        case 0x1C9: return U"lj";
        case 0x1CA: return U"NJ";
        case 0x1CB: return U"Nj";
        case 0x1CC: return U"nj";
        case 0xFB00: return U"ff";
        case 0xFB01: return U"fi";
        case 0xFB02: return U"fl";
        case 0xFB03: return U"ffi";
        case 0xFB04: return U"ffl";
        case 0xFB05: return U"\u017Ft";
        case 0xFB06: return U"st";
        default: return nullptr;
    }
}

const char* width_form(char32_t c) {
    if (c != 0x3000 && (c < 0xFF01 || c > 0xFFEF)) return nullptr;
    const t::StringMap* b = t::kWidthMap;
    const t::StringMap* e = b + t::kNumWidthMap;
    const t::StringMap* it = std::lower_bound(
        b, e, static_cast<uint32_t>(c), [](const t::StringMap& x, uint32_t v) { return x.cp < v; });
    return (it != e && it->cp == c) ? it->utf8 : nullptr;
}

bool is_removed_control(char32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
           c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

// The per-character fixes that follow fix_encoding, in ftfy's order.
std::u32string fix_characters(const std::u32string& s) {
    std::u32string a;  // fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes
    a.reserve(s.size());
    for (char32_t c : s) {
        if (c >= 0x80 && c < 0xA0) c = sloppy_1252_decode(static_cast<uint8_t>(c));
        if (const char32_t* lig = ligature(c)) { a += lig; continue; }
        if (const char* w = width_form(c)) { append_utf8_string(a, w); continue; }
        if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
        else if (c >= 0x201C && c <= 0x201F) c = '"';
        a.push_back(c);
    }
    std::u32string b;  // fix_line_breaks, remove_terminal_escapes, remove_control_chars
    b.reserve(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        char32_t c = a[i];
        if (c == '\r') {
            if (i + 1 < a.size() && a[i + 1] == '\n') ++i;
            c = '\n';
        } else if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            c = '\n';
        }
        b.push_back(c);
    }
    std::u32string out;
    out.reserve(b.size());
    for (size_t i = 0; i < b.size(); ++i) {
        if (b[i] == 0x1B && i + 1 < b.size() && b[i + 1] == '[') {  // \033\[[\d;]*[a-zA-Z]
            size_t j = i + 2;
            while (j < b.size() && ((b[j] >= '0' && b[j] <= '9') || b[j] == ';')) ++j;
            if (j < b.size() && ((b[j] >= 'a' && b[j] <= 'z') || (b[j] >= 'A' && b[j] <= 'Z'))) {
                i = j;
                continue;
            }
        }
        if (!is_removed_control(b[i])) out.push_back(b[i]);
    }
    return out;
}

std::u32string fix_segment(std::u32string s, bool unescape) {
    for (int iter = 0; iter < 16; ++iter) {
        const std::u32string orig = s;
        if (unescape) s = unescape_html(s);
        s = fix_encoding(std::move(s));
        s = fix_characters(s);
        s = unicode::nfc(s);
        if (s == orig) break;
    }
    return s;
}

}  // namespace

std::u32string fix_text(std::u32string_view text) {
    // ftfy.fix_text works line by line (each segment ends after '\n'); once a segment contains
    // '<' the text is taken for HTML and entities are no longer unescaped.
    std::u32string out;
    out.reserve(text.size());
    bool unescape = true;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t brk = text.find(U'\n', pos);
        brk = brk == std::u32string_view::npos ? text.size() : brk + 1;
        const std::u32string_view seg = text.substr(pos, brk - pos);
        if (seg.find(U'<') != std::u32string_view::npos) unescape = false;
        out += fix_segment(std::u32string(seg), unescape);
        pos = brk;
    }
    return out;
}

std::u32string bert_basic_clean(std::u32string_view text) {
    auto is_cjk = [](char32_t c) {  // BasicTokenizer._is_chinese_char
        return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
               (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
               (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
    };
    std::u32string out;
    out.reserve(text.size());
    for (char32_t c : text) {
        const bool tab_nl_cr = c == '\t' || c == '\n' || c == '\r';
        if (c == 0 || c == 0xFFFD || (!tab_nl_cr && unicode::is_other(c))) continue;
        if (tab_nl_cr || c == ' ' || unicode::is_space_separator(c)) {
            out.push_back(' ');
        } else if (is_cjk(c)) {
            out.push_back(' ');
            out.push_back(c);
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return unicode::nfc(out);
}

std::u32string whitespace_clean(std::u32string_view text) {
    std::u32string out;
    out.reserve(text.size());
    bool in_space = false;
    for (char32_t c : text) {
        if (unicode::is_space(c)) {
            in_space = true;
            continue;
        }
        if (in_space && !out.empty()) out.push_back(' ');
        in_space = false;
        out.push_back(c);
    }
    return out;
}

}  // namespace nuance::text
