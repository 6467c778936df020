// T5's tokenizer: a SentencePiece unigram model (Kudo 2018) with transformers' T5Tokenizer (slow) conventions,
// the tokenizer of T5 v1.1 / Flan-T5 and so of SD3's and Flux's T5-XXL text encoder.
//
//   text -> split out special tokens (<pad>, </s>, <unk>, <extra_id_N>) -> for each other segment:
//     normalize (precompiled charsmap, longest-match rewrite; drop leading/trailing whitespace, collapse runs,
//     dummy '▁' prefix, ' ' -> '▁') -> unigram Viterbi over piece scores -> merge runs of <unk>
//   -> ids + </s> -> truncate to L-1 (+ </s>) -> pad with <pad> to L
//
// legacy=true (SD3/Flux pipelines, transformers' default) encodes every segment with its own dummy prefix;
// legacy=false continues a segment after a special token without a new '▁' (transformers encodes "<unk>" + text
// with add_dummy_prefix off and drops the pieces of "<unk>").
// Invalid UTF-8 is never an error: each bad byte becomes U+FFFD, as in sentencepiece.
// Thread safety: const methods may be called concurrently.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nuance {

struct SpieceModel;

class T5Tokenizer {
public:
    static constexpr int kExtraIds = 100;

    // A SentencePiece ModelProto file (`spiece.model`); errors name the file and the field.
    static T5Tokenizer from_file(const std::string& path, int extra_ids = kExtraIds);
    static T5Tokenizer from_bytes(std::string_view model_bytes, const std::string& name, int extra_ids = kExtraIds);
    static T5Tokenizer from_model(SpieceModel model, const std::string& name, int extra_ids = kExtraIds);
    // A HF `tokenizers` file (`tokenizer.json`, as transformers' T5Converter writes it): a Unigram model whose vocab
    // lists the SentencePiece pieces in id order followed by <extra_id_{N-1}> .. <extra_id_0>; the Precompiled
    // normalizer's charsmap (alone or in a Sequence with Strip / Replace, which sentencepiece's whitespace rules
    // already do); the Metaspace pre-tokenizer's add_prefix_space. Errors (naming the file and the field): not JSON,
    // over 64 MiB, not a Unigram model, a malformed or oversized vocab entry, an unk_id out of range, extra ids out
    // of order, a normalizer sentencepiece cannot express, a charsmap that is not base64 or not a valid trie.
    static T5Tokenizer from_tokenizer_json(const std::string& path);
    // A diffusers tokenizer folder (SD3 tokenizer_3/, Flux tokenizer_2/): spiece.model when there is one, else
    // tokenizer.json; nullptr when it has neither (or `dir` does not exist). Errors name the file.
    static std::unique_ptr<T5Tokenizer> from_folder(const std::string& dir);
    // Google's T5 vocabulary (32000 pieces + 100 <extra_id_N>, Apache-2.0) embedded in the library; parsed once.
    static const T5Tokenizer& builtin();

    T5Tokenizer(T5Tokenizer&&) noexcept;
    T5Tokenizer& operator=(T5Tokenizer&&) noexcept;
    ~T5Tokenizer();

    // T5Tokenizer(legacy)(text).input_ids: ids with the trailing </s> (not added again when the text already ends
    // with "</s>"), untruncated.
    std::vector<int> encode(std::string_view text, bool legacy = true) const;
    // padding='max_length', truncation=True, max_length: the first max_length-1 ids + </s>, then <pad>. `length`
    // (optional) receives the number of ids before padding (attention mask = position < length).
    std::vector<int64_t> encode_padded(std::string_view text, int max_length, bool legacy = true,
                                       int* length = nullptr) const;

    // sentencepiece alone (no special-token splitting, no </s>): sp.encode(text) and its normalized text.
    std::vector<int> encode_pieces(std::string_view text) const;
    std::string normalize(std::string_view text) const;

    int pad_id() const;
    int eos_id() const;
    int unk_id() const;
    int extra_id(int n) const;  // <extra_id_n>, n in [0, extra_ids)
    int vocab_size() const;     // sentencepiece pieces + extra ids + special tokens missing from the pieces
    int token_id(std::string_view token) const;  // piece or special token; -1 when absent
    std::string token_text(int id) const;        // "" when absent

private:
    struct Impl;
    explicit T5Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace nuance
