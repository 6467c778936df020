// Minimal Unicode support for the tokenizers: UTF-8 <-> code points, the character classes the
// CLIP pre-tokenizer regex uses, Python's str.lower(), and NFC normalisation. Data: Unicode 14.0
// (Python 3.11, as in the reference environment), generated into unicode_tables.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace nuance::unicode {

constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes UTF-8. Invalid input never throws: each maximal ill-formed subsequence (a stray
// continuation byte, a truncated sequence, an overlong form, a surrogate or a value above
// U+10FFFF) becomes one U+FFFD, as Python's bytes.decode('utf-8', errors='replace').
std::u32string decode_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t c);  // c must be a scalar value (others -> U+FFFD)
std::string encode_utf8(std::u32string_view s);

bool is_letter(char32_t c);  // \p{L}
bool is_number(char32_t c);  // \p{N}
bool is_space(char32_t c);   // Python str.isspace(), i.e. what re's \s matches
bool is_other(char32_t c);   // general category C* (Cc, Cf, Cs, Co, Cn)
bool is_space_separator(char32_t c);  // general category Zs
uint8_t combining_class(char32_t c);

// Python's str.lower(): full lower-case mapping (U+0130 -> "i\u0307") with the final-sigma rule.
std::u32string to_lower(std::u32string_view s);

// Canonical composition (NFC), as unicodedata.normalize('NFC', s).
std::u32string nfc(std::u32string_view s);

}  // namespace nuance::unicode
