// transformers' T5Tokenizer (slow, 4.44) on top of the sentencepiece unigram encoder (t5_unigram.h):
// special-token splitting (PreTrainedTokenizer.tokenize), legacy / non-legacy segment encoding
// (T5Tokenizer.tokenize/_tokenize), </s> (_add_eos_if_not_present), truncation and padding.
#include "text/t5_tokenizer.h"

#include "core/error.h"
#include "text/t5_spiece_model.h"
#include "text/t5_unigram.h"
#include "text/unicode.h"

namespace nuance {

namespace {

constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";

struct Special {
    std::string text;
    int id = -1;
    bool strip = false;  // AddedToken lstrip=rstrip=True (the <extra_id_N>): neighbours lose adjacent whitespace
};

// One piece of the text after special-token splitting.
struct Segment {
    std::string_view text;
    int special = -1;  // index into specials, or -1 for text
};

// Python's str.lstrip() / str.rstrip() (str.isspace() characters).
std::string_view lstrip(std::string_view s) {
    while (!s.empty()) {
        size_t len = 1;
        const std::u32string c = unicode::decode_utf8(s.substr(0, std::min<size_t>(4, s.size())));
        if (c.empty() || !unicode::is_space(c[0])) break;
        len = unicode::encode_utf8(std::u32string(1, c[0])).size();
        s.remove_prefix(std::min(len, s.size()));
    }
    return s;
}

std::string_view rstrip(std::string_view s) {
    while (!s.empty()) {
        size_t start = s.size() - 1;  // the last character's lead byte
        while (start > 0 && s.size() - start < 4 && ((uint8_t)s[start] & 0xc0) == 0x80) --start;
        const std::u32string c = unicode::decode_utf8(s.substr(start));
        if (c.size() != 1 || !unicode::is_space(c[0])) break;
        s = s.substr(0, start);
    }
    return s;
}

}  // namespace

struct T5Tokenizer::Impl {
    std::string name;
    SpmUnigram spm;
    std::vector<Special> specials;  // </s>, <unk>, <pad>, <extra_id_0..N-1>
    int eos = -1, unk = -1, pad = -1, extra_ids = 0, vocab = 0;
    size_t unk_token_length = 0;  // len(sp.encode("<unk>")) without the dummy prefix (legacy=false)

    // PreTrainedTokenizer.tokens_trie.split: at each position the longest special token wins; the earliest
    // position first.
    std::vector<Segment> split(std::string_view text) const {
        std::vector<Segment> out;
        size_t seg_start = 0;
        for (size_t i = 0; i < text.size(); ++i) {
            if (text[i] != '<') continue;
            int best = -1;
            for (size_t k = 0; k < specials.size(); ++k) {
                const std::string& t = specials[k].text;
                if (text.compare(i, t.size(), t) == 0 && (best < 0 || t.size() > specials[(size_t)best].text.size()))
                    best = (int)k;
            }
            if (best < 0) continue;
            if (i > seg_start) out.push_back({text.substr(seg_start, i - seg_start), -1});
            out.push_back({text.substr(i, specials[(size_t)best].text.size()), best});
            i += specials[(size_t)best].text.size() - 1;
            seg_start = i + 1;
        }
        if (seg_start < text.size()) out.push_back({text.substr(seg_start), -1});
        // AddedToken(lstrip=True, rstrip=True): strip the whitespace of the neighbouring text segments.
        for (size_t i = 0; i < out.size(); ++i) {
            if (out[i].special < 0 || !specials[(size_t)out[i].special].strip) continue;
            if (i + 1 < out.size() && out[i + 1].special < 0) out[i + 1].text = lstrip(out[i + 1].text);
            if (i > 0 && out[i - 1].special < 0) out[i - 1].text = rstrip(out[i - 1].text);
        }
        return out;
    }

    // T5Tokenizer._tokenize for one text segment.
    void encode_segment(std::string_view seg, bool legacy, std::vector<int>& ids) const {
        const bool starts_with_space = seg.substr(0, kSpaceSymbol.size()) == kSpaceSymbol || seg.substr(0, 1) == " ";
        if (legacy || !starts_with_space) {
            const std::vector<int> v = spm.encode(seg, legacy ? spm.default_add_dummy_prefix() : false);
            ids.insert(ids.end(), v.begin(), v.end());
            return;
        }
        const std::vector<int> v = spm.encode("<unk>" + std::string(seg), false);
        if (v.size() >= unk_token_length)
            ids.insert(ids.end(), v.begin() + (ptrdiff_t)unk_token_length, v.end());
        else
            ids.insert(ids.end(), v.begin(), v.end());
    }

    // T5Tokenizer.tokenize + convert_tokens_to_ids (no </s>).
    std::vector<int> tokenize(std::string_view text, bool legacy) const {
        std::string buf;
        if (!legacy && !text.empty()) {  // "▁" + text.replace("▁", " ")
            buf = std::string(kSpaceSymbol);
            for (size_t i = 0; i < text.size();) {
                if (text.compare(i, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
                    buf += ' ';
                    i += kSpaceSymbol.size();
                } else {
                    buf += text[i++];
                }
            }
            text = buf;
        }
        std::vector<int> ids;
        std::vector<bool> is_special;
        for (const Segment& s : split(text)) {
            if (s.special >= 0) {
                ids.push_back(specials[(size_t)s.special].id);
                is_special.push_back(true);
            } else if (!s.text.empty()) {
                encode_segment(s.text, legacy, ids);
                is_special.resize(ids.size(), false);
            }
        }
        // legacy=False: a lone leading '▁' before a special token is dropped.
        if (!legacy && ids.size() > 1 && !is_special[0] && spm.piece(ids[0]) == kSpaceSymbol && is_special[1])
            ids.erase(ids.begin());
        return ids;
    }

    std::vector<int> with_eos(std::vector<int> ids) const {
        if (ids.empty() || ids.back() != eos) ids.push_back(eos);
        return ids;
    }
};

T5Tokenizer::T5Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;
T5Tokenizer::~T5Tokenizer() = default;

T5Tokenizer T5Tokenizer::from_model(SpieceModel model, const std::string& name, int extra_ids) {
    NUANCE_CHECK(extra_ids >= 0 && extra_ids <= 1000, name, ": extra_ids = ", extra_ids, " is outside 0..1000");
    auto impl = std::make_unique<Impl>();
    impl->name = name;
    impl->spm = SpmUnigram(model, name);
    impl->extra_ids = extra_ids;
    const int size = impl->spm.size();
    // <extra_id_i> = size - 1 + extra_ids - i (counting down from the end); eos/unk/pad are the pieces of that
    // text, else added after the extra ids in that order (transformers' _add_tokens).
    int next = size + extra_ids;
    auto special_id = [&](const char* text) {
        const int id = impl->spm.piece_id(text);
        return id >= 0 ? id : next++;
    };
    impl->eos = special_id("</s>");
    impl->unk = special_id("<unk>");
    impl->pad = special_id("<pad>");
    impl->vocab = next;
    impl->specials.push_back({"</s>", impl->eos, false});
    impl->specials.push_back({"<unk>", impl->unk, false});
    impl->specials.push_back({"<pad>", impl->pad, false});
    for (int i = 0; i < extra_ids; ++i)
        impl->specials.push_back({"<extra_id_" + std::to_string(i) + ">", size - 1 + extra_ids - i, true});
    impl->unk_token_length = impl->spm.encode("<unk>", false).size();
    return T5Tokenizer(std::move(impl));
}

T5Tokenizer T5Tokenizer::from_bytes(std::string_view bytes, const std::string& name, int extra_ids) {
    return from_model(SpieceModel::parse(bytes, name), name, extra_ids);
}

T5Tokenizer T5Tokenizer::from_file(const std::string& path, int extra_ids) {
    return from_model(SpieceModel::load(path), path, extra_ids);
}

std::vector<int> T5Tokenizer::encode(std::string_view text, bool legacy) const {
    return impl_->with_eos(impl_->tokenize(text, legacy));
}

std::vector<int64_t> T5Tokenizer::encode_padded(std::string_view text, int max_length, bool legacy,
                                                int* length) const {
    NUANCE_CHECK(max_length >= 1 && max_length <= (1 << 20), "T5 tokenizer: max_length ", max_length,
                 " is outside 1..", 1 << 20);
    std::vector<int> ids = impl_->tokenize(text, legacy);
    if (ids.size() + 1 > (size_t)max_length) ids.resize((size_t)max_length - 1);  // room for </s>
    ids = impl_->with_eos(std::move(ids));
    if (length) *length = (int)ids.size();
    std::vector<int64_t> out(ids.begin(), ids.end());
    out.resize((size_t)max_length, impl_->pad);
    return out;
}

std::vector<int> T5Tokenizer::encode_pieces(std::string_view text) const {
    return impl_->spm.encode(text, impl_->spm.default_add_dummy_prefix());
}

std::string T5Tokenizer::normalize(std::string_view text) const {
    return impl_->spm.normalize(text, impl_->spm.default_add_dummy_prefix());
}

int T5Tokenizer::pad_id() const { return impl_->pad; }
int T5Tokenizer::eos_id() const { return impl_->eos; }
int T5Tokenizer::unk_id() const { return impl_->unk; }
int T5Tokenizer::vocab_size() const { return impl_->vocab; }

int T5Tokenizer::extra_id(int n) const {
    NUANCE_CHECK(n >= 0 && n < impl_->extra_ids, "T5 tokenizer: <extra_id_", n, "> is outside 0..",
                 impl_->extra_ids - 1);
    return impl_->spm.size() - 1 + impl_->extra_ids - n;
}

int T5Tokenizer::token_id(std::string_view token) const {
    for (const Special& s : impl_->specials)
        if (s.text == token) return s.id;
    return impl_->spm.piece_id(token);
}

std::string T5Tokenizer::token_text(int id) const {
    for (const Special& s : impl_->specials)
        if (s.id == id) return s.text;
    return id >= 0 && id < impl_->spm.size() ? impl_->spm.piece(id) : std::string();
}

}  // namespace nuance
