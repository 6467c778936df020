// SentencePiece unigram encoding, reproduced from sentencepiece 0.1.97 (normalizer.cc, unigram_model.cc) including
// its float/double arithmetic, which decides exact score ties (golden/README.md, t5_tokenizer_real).
// Byte strings are UTF-8; '▁' (U+2581, "\xe2\x96\x81") stands for a space.
#include "text/t5_unigram.h"

#include <algorithm>
#include <cfloat>
#include <cstring>

#include "core/error.h"

namespace nuance {

namespace {

constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";
constexpr std::string_view kReplacementChar = "\xef\xbf\xbd";
constexpr size_t kMaxTrieResults = 32;

// Length of a valid UTF-8 sequence at the start of s, or 0 when it is malformed (overlong, surrogate, > U+10FFFF,
// truncated).
size_t valid_utf8_len(std::string_view s) {
    const auto b = [&](size_t i) { return (uint8_t)s[i]; };
    const uint8_t c = b(0);
    if (c < 0x80) return 1;
    auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xc0) == 0x80; };
    if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
        if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogate
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
        if (c == 0xf4 && b(1) >= 0x90) return 0;  // > U+10FFFF
        return 4;
    }
    return 0;
}

// sentencepiece's OneCharLen: the length a UTF-8 lead byte announces (1 for anything else).
size_t one_char_len(uint8_t c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// ---- precompiled charsmap ----

SpmCharsMap::SpmCharsMap(std::string_view blob, const std::string& name) {
    if (blob.empty()) return;
    NUANCE_CHECK(blob.size() > 4, name, ": precompiled_charsmap is ", blob.size(), " bytes, too short for its header");
    const uint32_t trie_bytes = (uint32_t)(uint8_t)blob[0] | (uint32_t)(uint8_t)blob[1] << 8 |
                                (uint32_t)(uint8_t)blob[2] << 16 | (uint32_t)(uint8_t)blob[3] << 24;
    NUANCE_CHECK(trie_bytes <= blob.size() - 4, name,
                 ": precompiled_charsmap trie size ", trie_bytes, " exceeds the ", blob.size() - 4,
                 " bytes that follow the header");
    NUANCE_CHECK(trie_bytes % 4 == 0 && trie_bytes > 0, name, ": precompiled_charsmap trie size ", trie_bytes,
                 " is not a positive multiple of 4");
    units_.resize(trie_bytes / 4);
    for (size_t i = 0; i < units_.size(); ++i) {
        const char* p = blob.data() + 4 + 4 * i;
        units_[i] = (uint32_t)(uint8_t)p[0] | (uint32_t)(uint8_t)p[1] << 8 | (uint32_t)(uint8_t)p[2] << 16 |
                    (uint32_t)(uint8_t)p[3] << 24;
    }
    replacements_ = std::string(blob.substr(4 + trie_bytes));
}

// darts-clone DoubleArray::commonPrefixSearch. Unit fields: has_leaf bit 8, value = low 31 bits,
// label = bit 31 | low 8 bits, offset = (unit >> 10) << ((unit & 512) >> 6). Every index is bounds-checked (a
// hostile trie walks off nowhere: an out-of-range node is a mismatch).
size_t SpmCharsMap::longest_prefix(std::string_view in, std::string_view* replacement) const {
    if (units_.empty()) return 0;
    auto offset = [](uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); };
    size_t node = offset(units_[0]);
    size_t longest = 0, found = 0;
    uint32_t value = 0;
    for (size_t i = 0; i < in.size(); ++i) {
        const uint8_t c = (uint8_t)in[i];
        node ^= c;
        if (node >= units_.size()) break;
        const uint32_t u = units_[node];
        if ((u & ((1u << 31) | 0xffu)) != c) break;
        node ^= offset(u);
        if ((u >> 8) & 1) {
            if (node >= units_.size()) break;
            if (found < kMaxTrieResults) {  // results past the 32nd are counted but not kept
                longest = i + 1;
                value = units_[node] & ((1u << 31) - 1);
            }
            ++found;
        }
    }
    if (longest == 0) return 0;
    if (value >= replacements_.size()) {
        *replacement = std::string_view();
        return longest;  // a rule pointing past the blob rewrites to nothing
    }
    const char* s = replacements_.data() + value;
    *replacement = std::string_view(s, strnlen(s, replacements_.size() - value));
    return longest;
}

// ---- model ----

SpmUnigram::SpmUnigram(const SpieceModel& m, const std::string& name)
    : pieces_(m.pieces), charsmap_(m.precompiled_charsmap, name), add_dummy_prefix_(m.add_dummy_prefix),
      remove_extra_whitespaces_(m.remove_extra_whitespaces), escape_whitespaces_(m.escape_whitespaces) {
    NUANCE_CHECK(pieces_.size() < (size_t)INT32_MAX / 2, name, ": too many pieces (", pieces_.size(), ")");
    min_score_ = FLT_MAX;
    max_score_ = FLT_MIN;  // sic (sentencepiece): only used for user-defined pieces
    value_.push_back(-1);
    for (size_t i = 0; i < pieces_.size(); ++i) {
        const SpiecePiece& p = pieces_[i];
        const bool inserted = by_piece_.emplace(std::string_view(p.piece), (int)i).second;
        NUANCE_CHECK(inserted, name, ": piece '", p.piece, "' (id ", i, ") is already defined");
        if (p.type == SpiecePieceType::Unknown) {
            NUANCE_CHECK(unk_id_ < 0, name, ": two <unk> pieces (ids ", unk_id_, " and ", i, ")");
            unk_id_ = (int)i;
        }
        if (p.type == SpiecePieceType::Normal) {
            min_score_ = std::min(min_score_, p.score);
            max_score_ = std::max(max_score_, p.score);
        }
        if (p.type != SpiecePieceType::Normal && p.type != SpiecePieceType::UserDefined &&
            p.type != SpiecePieceType::Unused)
            continue;
        size_t node = 0;
        for (const char ch : p.piece) {
            const uint64_t key = (uint64_t)node << 8 | (uint8_t)ch;
            auto it = edges_.find(key);
            if (it == edges_.end()) {
                it = edges_.emplace(key, (int32_t)value_.size()).first;
                value_.push_back(-1);
            }
            node = (size_t)it->second;
        }
        value_[node] = (int32_t)i;
    }
    NUANCE_CHECK(unk_id_ >= 0, name, ": no piece of type UNKNOWN (<unk>)");
}

int SpmUnigram::piece_id(std::string_view piece) const {
    auto it = by_piece_.find(piece);
    return it == by_piece_.end() ? -1 : it->second;
}

std::pair<std::string_view, size_t> SpmUnigram::normalize_prefix(std::string_view in) const {
    std::string_view rep;
    const size_t n = charsmap_.longest_prefix(in, &rep);
    if (n > 0) return {rep, n};
    const size_t len = valid_utf8_len(in);
    if (len == 0) return {kReplacementChar, 1};  // malformed: U+FFFD, one byte consumed
    return {in.substr(0, len), len};
}

std::string SpmUnigram::normalize(std::string_view in, bool add_dummy_prefix) const {
    // A hostile charsmap could rewrite every character to a megabyte; real rules expand by at most ~11x (U+FDFA).
    const size_t max_out = 64 * in.size() + 4096;
    std::string out;
    if (remove_extra_whitespaces_) {  // leading whitespace
        while (!in.empty()) {
            const auto p = normalize_prefix(in);
            if (p.first != " ") break;
            in.remove_prefix(p.second);
        }
    }
    if (in.empty()) return out;
    out.reserve(in.size() * 3);
    auto add_ws = [&] { out += escape_whitespaces_ ? kSpaceSymbol : std::string_view(" "); };
    if (add_dummy_prefix) add_ws();

    bool is_prev_space = remove_extra_whitespaces_;
    while (!in.empty()) {
        const auto p = normalize_prefix(in);
        std::string_view sp = p.first;
        if (is_prev_space && remove_extra_whitespaces_)
            while (!sp.empty() && sp.front() == ' ') sp.remove_prefix(1);
        if (!sp.empty()) {
            for (const char ch : sp) {
                if (escape_whitespaces_ && ch == ' ')
                    out += kSpaceSymbol;
                else
                    out += ch;
            }
            is_prev_space = sp.back() == ' ';
            NUANCE_CHECK(out.size() <= max_out, "T5 tokenizer: the model's normalization rules grow ", in.size(),
                         " bytes of text past ", max_out, " bytes (corrupt precompiled_charsmap?)");
        }
        in.remove_prefix(p.second);
        if (!remove_extra_whitespaces_) is_prev_space = false;
    }
    if (remove_extra_whitespaces_) {  // trailing whitespace
        const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : std::string_view(" ");
        while (ends_with(out, space)) out.resize(out.size() - space.size());
    }
    return out;
}

// unigram_model.cc Model::EncodeOptimized. Piece candidates: score (float, or double for user-defined pieces) plus
// the float path score, computed and compared in double, stored as float. The <unk> candidate is all float.
std::vector<int> SpmUnigram::viterbi(std::string_view s) const {
    struct Best {
        int id = -1;
        float score = 0.0f;
        int64_t starts_at = -1;
    };
    const size_t size = s.size();
    if (size == 0) return {};
    const float unk_score = min_score_ - 10.0f;
    std::vector<Best> best(size + 1);
    size_t start = 0;
    while (start < size) {
        const float here = best[start].score;
        bool has_single_node = false;
        const size_t mblen = std::min(one_char_len((uint8_t)s[start]), size - start);
        size_t node = 0;
        for (size_t pos = start; pos < size;) {
            auto it = edges_.find((uint64_t)node << 8 | (uint8_t)s[pos]);
            if (it == edges_.end()) break;
            node = (size_t)it->second;
            ++pos;
            const int id = value_[node];
            if (id < 0) continue;
            const SpiecePiece& p = pieces_[(size_t)id];
            if (p.type == SpiecePieceType::Unused) continue;
            const size_t length = pos - start;
            const double score = p.type == SpiecePieceType::UserDefined ? (double)length * max_score_ - 0.1
                                                                        : (double)p.score;
            const double cand = score + (double)here;
            Best& t = best[pos];
            if (t.starts_at == -1 || cand > (double)t.score) {
                t.score = (float)cand;
                t.starts_at = (int64_t)start;
                t.id = id;
            }
            if (!has_single_node && length == mblen) has_single_node = true;
        }
        if (!has_single_node) {
            Best& t = best[start + mblen];
            const float cand = unk_score + here;
            if (t.starts_at == -1 || cand > t.score) {
                t.score = cand;
                t.starts_at = (int64_t)start;
                t.id = unk_id_;
            }
        }
        start += mblen;
    }
    std::vector<int> ids;
    for (size_t end = size; end > 0;) {
        const Best& b = best[end];
        NUANCE_ASSERT(b.starts_at >= 0 && (size_t)b.starts_at < end, "unigram lattice has no path to ", end);
        ids.push_back(b.id);
        end = (size_t)b.starts_at;
    }
    std::reverse(ids.begin(), ids.end());
    return ids;
}

std::vector<int> SpmUnigram::encode(std::string_view text, bool add_dummy_prefix) const {
    const std::vector<int> raw = viterbi(normalize(text, add_dummy_prefix));
    std::vector<int> ids;
    ids.reserve(raw.size());
    for (const int id : raw) {
        if (id == unk_id_ && !ids.empty() && ids.back() == unk_id_) continue;  // merge runs of <unk>
        ids.push_back(id);
    }
    return ids;
}

}  // namespace nuance
