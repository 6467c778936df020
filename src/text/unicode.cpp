#include "text/unicode.h"

#include <algorithm>

#include "text/unicode_tables.h"

namespace nuance::unicode {

namespace t = tables;

// ---- UTF-8 ------------------------------------------------------------------------------------

std::u32string decode_utf8(std::string_view s) {
    std::u32string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned b0 = p[i];
        if (b0 < 0x80) { out.push_back(b0); ++i; continue; }
        int len;
        char32_t cp;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the 2nd byte (Unicode Table 3-7)
        if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; cp = b0 & 0x1F; }
        else if (b0 >= 0xE0 && b0 <= 0xEF) {
            len = 3; cp = b0 & 0x0F;
            if (b0 == 0xE0) lo = 0xA0;
            if (b0 == 0xED) hi = 0x9F;  // no surrogates
        } else if (b0 >= 0xF0 && b0 <= 0xF4) {
            len = 4; cp = b0 & 0x07;
            if (b0 == 0xF0) lo = 0x90;
            if (b0 == 0xF4) hi = 0x8F;
        } else {  // continuation byte without a lead, C0/C1 (overlong) or F5..FF
            out.push_back(kReplacementChar); ++i; continue;
        }
        // Consume the longest valid prefix; an incomplete sequence becomes one U+FFFD.
        size_t j = i + 1;
        bool ok = true;
        for (int k = 1; k < len; ++k, ++j) {
            const unsigned lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
            if (j >= n || p[j] < lo_k || p[j] > hi_k) { ok = false; break; }
            cp = (cp << 6) | (p[j] & 0x3F);
        }
        out.push_back(ok ? cp : kReplacementChar);
        i = j;
    }
    return out;
}

void append_utf8(std::string& out, char32_t c) {
    if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) c = kReplacementChar;
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

std::string encode_utf8(std::u32string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s) append_utf8(out, c);
    return out;
}

// ---- classes ----------------------------------------------------------------------------------

namespace {

uint8_t range_value(const t::ClassRange* r, size_t n, char32_t c) {
    const t::ClassRange* end = r + n;
    const t::ClassRange* it =
        std::upper_bound(r, end, static_cast<uint32_t>(c), [](uint32_t v, const t::ClassRange& x) { return v < x.lo; });
    if (it == r) return 0;
    --it;
    return c <= it->hi ? it->value : 0;
}

uint8_t classes(char32_t c) {
    if (c < 0x80) {  // fast path: ASCII
        if (c >= 'a' && c <= 'z') return t::kLetter | t::kCased;
        if (c >= 'A' && c <= 'Z') return t::kLetter | t::kCased;
        if (c >= '0' && c <= '9') return t::kNumber;
    }
    return range_value(t::kClassRanges, t::kNumClassRanges, c);
}

char32_t lower_simple(char32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    const t::LowerRun* r = t::kLowerRuns;
    const t::LowerRun* end = r + t::kNumLowerRuns;
    const t::LowerRun* it =
        std::upper_bound(r, end, static_cast<uint32_t>(c), [](uint32_t v, const t::LowerRun& x) { return v < x.lo; });
    if (it == r) return c;
    --it;
    if (c > it->hi || (c - it->lo) % static_cast<uint32_t>(it->step) != 0) return c;
    return static_cast<char32_t>(static_cast<int64_t>(c) + it->delta);
}

}  // namespace

bool is_letter(char32_t c) { return classes(c) & t::kLetter; }
bool is_number(char32_t c) { return classes(c) & t::kNumber; }
bool is_space(char32_t c) { return classes(c) & t::kSpace; }
bool is_other(char32_t c) { return classes(c) & t::kOther; }
bool is_space_separator(char32_t c) { return classes(c) & t::kSpaceSeparator; }
uint8_t combining_class(char32_t c) { return c < 0x300 ? 0 : range_value(t::kCccRanges, t::kNumCccRanges, c); }

// ---- lower case -------------------------------------------------------------------------------

std::u32string to_lower(std::u32string_view s) {
    std::u32string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        const char32_t c = s[i];
        if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE (SpecialCasing.txt)
            out.push_back(U'i');
            out.push_back(0x307);
        } else if (c == 0x3A3) {
            // Final_Sigma (Python's handle_capital_sigma): preceded by a cased letter and not
            // followed by one, skipping case-ignorable characters on both sides.
            size_t j = i;
            char32_t prev = 0;
            while (j > 0) {
                prev = s[j - 1];
                if (!(classes(prev) & t::kCaseIgnorable)) break;
                --j;
            }
            bool final_sigma = j > 0 && (classes(prev) & t::kCased);
            if (final_sigma) {
                size_t k = i + 1;
                while (k < s.size() && (classes(s[k]) & t::kCaseIgnorable)) ++k;
                final_sigma = k == s.size() || !(classes(s[k]) & t::kCased);
            }
            out.push_back(final_sigma ? 0x3C2 : 0x3C3);
        } else {
            out.push_back(lower_simple(c));
        }
    }
    return out;
}

// ---- NFC --------------------------------------------------------------------------------------

namespace {

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

const t::Decomposition* find_decomposition(char32_t c) {
    const t::Decomposition* b = t::kDecompositions;
    const t::Decomposition* e = b + t::kNumDecompositions;
    const t::Decomposition* it =
        std::lower_bound(b, e, static_cast<uint32_t>(c), [](const t::Decomposition& x, uint32_t v) { return x.cp < v; });
    return (it != e && it->cp == c) ? it : nullptr;
}

void decompose(char32_t c, std::u32string& out, int depth = 0) {
    if (c >= kSBase && c < kSBase + kSCount) {
        const char32_t s = c - kSBase;
        out.push_back(kLBase + s / kNCount);
        out.push_back(kVBase + (s % kNCount) / kTCount);
        if (s % kTCount) out.push_back(kTBase + s % kTCount);
        return;
    }
    const t::Decomposition* d = c < 0xC0 ? nullptr : find_decomposition(c);
    if (!d || depth > 8) { out.push_back(c); return; }
    decompose(d->first, out, depth + 1);
    if (d->second) decompose(d->second, out, depth + 1);
}

char32_t compose_pair(char32_t a, char32_t b) {
    if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
        return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
        return a + (b - kTBase);
    const t::Composition* s = t::kCompositions;
    const t::Composition* e = s + t::kNumCompositions;
    const t::Composition* it = std::lower_bound(s, e, std::pair<uint32_t, uint32_t>(a, b),
        [](const t::Composition& x, const std::pair<uint32_t, uint32_t>& v) {
            return x.first < v.first || (x.first == v.first && x.second < v.second);
        });
    return (it != e && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

std::u32string nfc(std::u32string_view s) {
    // Fast path: text with nothing that can decompose or combine is already NFC.
    bool trivial = true;
    for (char32_t c : s)
        if (c >= 0xC0) { trivial = false; break; }
    if (trivial) return std::u32string(s);

    // 1. full canonical decomposition
    std::u32string d;
    d.reserve(s.size() + 8);
    for (char32_t c : s) decompose(c, d);
    // 2. canonical ordering: stable sort each run of non-starters by combining class
    for (size_t i = 0; i < d.size();) {
        if (combining_class(d[i]) == 0) { ++i; continue; }
        size_t j = i;
        while (j < d.size() && combining_class(d[j]) != 0) ++j;
        std::stable_sort(d.begin() + i, d.begin() + j,
                         [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
        i = j;
    }
    // 3. canonical composition (UAX #15): combine each char with the last starter unless blocked
    std::u32string out;
    out.reserve(d.size());
    size_t starter = std::u32string::npos;
    int last_ccc = -1;
    for (char32_t c : d) {
        const int ccc = combining_class(c);
        if (starter != std::u32string::npos) {
            const bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= ccc);
            if (!blocked) {
                const char32_t comp = compose_pair(out[starter], c);
                if (comp) { out[starter] = comp; continue; }
            }
        }
        if (ccc == 0) { starter = out.size(); last_ccc = -1; }
        else last_ccc = ccc;
        out.push_back(c);
    }
    return out;
}

}  // namespace nuance::unicode
