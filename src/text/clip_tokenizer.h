// CLIP byte-level BPE tokenizer (Radford et al. 2021), as transformers' CLIPTokenizer (slow, with
// ftfy installed) and openai/CLIP's SimpleTokenizer:
//
//   text -> ftfy.fix_text -> whitespace_clean -> lower -> regex pre-split ->
//   UTF-8 bytes -> bytes_to_unicode chars (last one + "</w>") -> BPE by merge rank -> vocab ids
//
// Pre-split regex (case-insensitive):
//   <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// Special tokens: "<|startoftext|>" and "<|endoftext|>" in the raw text are split out before any
// normalisation (as transformers does) and map to BOS/EOS.
// Invalid UTF-8 in the input is never an error: each ill-formed byte sequence becomes U+FFFD
// (then tokenized like any other symbol).
// Thread safety: all const methods may be called concurrently (the per-word BPE cache is locked).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nuance {

// Text clean-up before BPE. transformers' CLIPTokenizer uses ftfy when it is installed (the
// reference behaviour, equal to openai's tokenizer), else BERT's BasicTokenizer clean-up, which
// differs on CJK, fullwidth, ligature, curly-quote and HTML-entity text.
enum class ClipNormalization { Ftfy, Basic };

class ClipTokenizer {
public:
    static constexpr int kBosId = 49406;  // <|startoftext|> in the openai vocab
    static constexpr int kEosId = 49407;  // <|endoftext|>
    static constexpr int kMaxLength = 77;

    // transformers format: vocab.json (token -> id) and merges.txt (first line '#version...' is
    // skipped; like transformers only the first 48894 merges are used). Throws nuance::Error naming
    // the file when it is missing, unreadable or malformed.
    static ClipTokenizer from_files(const std::string& vocab_json, const std::string& merges_txt);
    // From the file contents; `vocab_name`/`merges_name` only name them in error messages.
    static ClipTokenizer from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                      const std::string& vocab_name = "vocab.json",
                                      const std::string& merges_name = "merges.txt");
    // The openai CLIP vocabulary (49408 tokens) embedded in the library; parsed once, lazily.
    static const ClipTokenizer& builtin();

    ClipTokenizer(ClipTokenizer&&) noexcept;
    ClipTokenizer& operator=(ClipTokenizer&&) noexcept;
    ~ClipTokenizer();

    // Token ids without BOS/EOS, untruncated.
    std::vector<int> encode(const std::string& text) const;
    // As encode, and also splits out the tokens `extra_special` (literal strings, e.g. "!"), which
    // map to their vocab ids without BPE -- transformers does this for every special token,
    // including pad_token.
    std::vector<int> encode(const std::string& text, const std::vector<std::string>& extra_special,
                            ClipNormalization norm = ClipNormalization::Ftfy) const;
    // BPE token strings (bytes_to_unicode form, e.g. "cafÃ©</w>") for tests and debugging.
    std::vector<std::string> bpe_tokens(const std::string& text) const;

    // [BOS, ids[:max_len-2], EOS, pad...] of length max_len. SD1.x pads with EOS (49407), SD2.x and
    // SDXL's second tokenizer with 0 ('!'). With pad_is_special (transformers' behaviour, the
    // default) the pad token's text is also split out of the prompt as a special token, so with
    // pad_id 0 a literal '!' becomes id 0 exactly as in diffusers' SD2/SDXL pipelines; pass false
    // for open_clip's tokenizer, which pads with 0 but tokenizes '!' normally.
    std::vector<int64_t> encode_padded(const std::string& text, int pad_id, int max_len = kMaxLength,
                                       bool pad_is_special = true,
                                       ClipNormalization norm = ClipNormalization::Ftfy) const;

    int bos_id() const;
    int eos_id() const;
    int vocab_size() const;  // number of entries in vocab.json
    int token_id(const std::string& token) const;  // -1 when absent
    const std::string& token_text(int id) const;   // "" when absent

private:
    struct Impl;
    explicit ClipTokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace nuance
