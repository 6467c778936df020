// SentencePiece's unigram encoder (sentencepiece 0.1.97: normalizer.cc + unigram_model.cc EncodeOptimized), the
// part of T5Tokenizer below the special-token handling. Internal to src/text (t5_tokenizer.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/t5_spiece_model.h"

namespace nuance {

// The precompiled charsmap: a darts-clone double-array trie over UTF-8 byte strings whose values are offsets into a
// blob of NUL-terminated replacement strings. Layout: uint32 LE trie size in bytes, the trie units (uint32 LE), the
// replacement blob.
class SpmCharsMap {
public:
    SpmCharsMap() = default;
    SpmCharsMap(std::string_view blob, const std::string& name);
    bool empty() const { return units_.empty(); }
    // Longest rule matching a prefix of `in` (at most the first 32 matches count, as sentencepiece's
    // kMaxTrieResultsSize): its length in bytes (0 = none) and the replacement.
    size_t longest_prefix(std::string_view in, std::string_view* replacement) const;

private:
    std::vector<uint32_t> units_;
    std::string replacements_;
};

class SpmUnigram {
public:
    SpmUnigram() = default;
    SpmUnigram(const SpieceModel& m, const std::string& name);

    // The normalized text (charsmap, whitespace rules, '▁'); add_dummy_prefix overrides the file's flag (T5's
    // legacy=false turns it off).
    std::string normalize(std::string_view text, bool add_dummy_prefix) const;
    // sp.encode: normalize, Viterbi, merge consecutive <unk>s.
    std::vector<int> encode(std::string_view text, bool add_dummy_prefix) const;
    // Viterbi over already-normalized text (no <unk> merging).
    std::vector<int> viterbi(std::string_view normalized) const;

    bool default_add_dummy_prefix() const { return add_dummy_prefix_; }
    int size() const { return (int)pieces_.size(); }
    int unk_id() const { return unk_id_; }
    int piece_id(std::string_view piece) const;  // any type; -1 when absent
    const std::string& piece(int id) const { return pieces_[(size_t)id].piece; }

private:
    // (normalized text of the longest prefix, bytes consumed)
    std::pair<std::string_view, size_t> normalize_prefix(std::string_view in) const;

    std::vector<SpiecePiece> pieces_;
    std::unordered_map<std::string_view, int> by_piece_;  // views into pieces_ (never resized after construction)
    // Piece trie: node 0 is the root; edges_[node << 8 | byte] = child; value_[node] = piece id or -1.
    std::unordered_map<uint64_t, int32_t> edges_;
    std::vector<int32_t> value_;
    SpmCharsMap charsmap_;
    int unk_id_ = -1;
    float min_score_ = 0.0f, max_score_ = 0.0f;
    bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

}  // namespace nuance
