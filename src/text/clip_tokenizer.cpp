#include "text/clip_tokenizer.h"

#include <array>
#include <fstream>
#include <limits>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/text_fix.h"
#include "text/unicode.h"

namespace nuance {

namespace {

constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";
constexpr const char* kEndOfWord = "</w>";
// transformers' CLIPTokenizer reads merges[1 : 49152 - 256 - 2 + 1]: at most 48894 merges.
constexpr size_t kMaxMerges = 49152 - 256 - 2;
constexpr size_t kCacheLimit = 1 << 16;
constexpr size_t kLongPiece = 64;  // bytes; longer pieces use the heap-based BPE

// GPT-2/CLIP bytes_to_unicode(): printable bytes map to themselves, the rest to U+0100 + n.
std::array<std::string, 256> make_byte_encoder() {
    std::array<char32_t, 256> cs{};
    std::array<bool, 256> printable{};
    for (int b = '!'; b <= '~'; ++b) printable[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
    int n = 0;
    for (int b = 0; b < 256; ++b) cs[b] = printable[b] ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    std::array<std::string, 256> out;
    for (int b = 0; b < 256; ++b) unicode::append_utf8(out[b], cs[b]);
    return out;
}

std::string read_file(const std::string& path, const char* what) {
    std::ifstream f(path, std::ios::binary);
    NUANCE_CHECK_CODE(f.good(), NotFound, "CLIP tokenizer: cannot open ", what, " file '", path, "'");
    std::ostringstream ss;
    ss << f.rdbuf();
    NUANCE_CHECK_CODE(!f.bad(), Io, "CLIP tokenizer: error reading ", what, " file '", path, "'");
    return ss.str();
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Case-insensitive match of an ASCII literal at s[i] (the text is already lower-cased; U+017F
// LATIN SMALL LETTER LONG S case-folds to 's' as in the `regex` module's IGNORECASE).
bool match_literal(const std::u32string& s, size_t i, std::string_view lit) {
    if (i + lit.size() > s.size()) return false;
    for (size_t k = 0; k < lit.size(); ++k) {
        char32_t c = s[i + k];
        if (c == 0x17F) c = 's';
        if (c >= 'A' && c <= 'Z') c += 32;
        if (c != static_cast<unsigned char>(lit[k])) return false;
    }
    return true;
}

// SAX reader of vocab.json: a flat object of token -> integer id (no DOM: the file has 49408 keys).
struct VocabReader {
    std::vector<std::pair<std::string, int64_t>> entries;
    std::string current_key, error;
    int depth = 0;
    bool top_is_object = false;

    bool fail(std::string msg) {
        if (error.empty()) error = std::move(msg);
        return false;
    }
    bool value_int(int64_t v) {
        if (depth != 1) return fail("must be a JSON object of token -> id");
        entries.emplace_back(std::move(current_key), v);
        return true;
    }
    bool not_int() { return fail(depth == 1 ? "token '" + current_key + "' has a non-integer id" : "must be a JSON object of token -> id"); }
    bool null() { return not_int(); }
    bool boolean(bool) { return not_int(); }
    bool number_integer(nlohmann::json::number_integer_t v) { return value_int(v); }
    bool number_unsigned(nlohmann::json::number_unsigned_t v) {
        return value_int(v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v));
    }
    bool number_float(nlohmann::json::number_float_t, const std::string&) { return not_int(); }
    bool string(std::string&) { return not_int(); }
    bool binary(nlohmann::json::binary_t&) { return not_int(); }
    bool start_object(std::size_t) {
        if (depth == 0) top_is_object = true;
        else return not_int();
        ++depth;
        return true;
    }
    bool end_object() { --depth; return true; }
    bool start_array(std::size_t) { return depth == 0 ? fail("must be a JSON object of token -> id") : not_int(); }
    bool end_array() { return true; }
    bool key(std::string& k) { current_key = k; return true; }
    bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) {
        return fail("is not valid JSON (error at byte " + std::to_string(pos) + ")");
    }
};

}  // namespace

struct ClipTokenizer::Impl {
    // Symbols are interned token strings (bytes_to_unicode form); most are vocab entries.
    std::unordered_map<std::string, int> sym_index;
    std::vector<std::string> sym_text;
    std::vector<int> sym_id;  // vocab id of each symbol, -1 when the vocab lacks it (-> unk)
    std::array<int, 256> byte_sym{}, byte_end_sym{};
    std::unordered_map<uint64_t, std::pair<int, int>> merges;  // (left, right) -> (rank, merged)
    int vocab_entries = 0;
    std::vector<std::string> id_to_token;
    int bos = -1, eos = -1, unk = -1;
    int sym_bos = -1, sym_eos = -1;

    mutable std::mutex cache_mu;
    mutable std::unordered_map<std::string, std::vector<int>> cache;  // piece bytes -> symbols

    // Symbol index of s, adding it (with no vocab id) when new.
    int intern(const std::string& s) {
        auto [it, inserted] = sym_index.emplace(s, static_cast<int>(sym_text.size()));
        if (inserted) {
            sym_text.push_back(s);
            sym_id.push_back(-1);
        }
        return it->second;
    }

    static uint64_t pair_key(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

    // Byte-level BPE of one pre-tokenized piece (UTF-8 bytes) -> symbols.
    std::vector<int> bpe(const std::string& piece) const {
        std::vector<int> word;
        word.reserve(piece.size());
        for (size_t i = 0; i < piece.size(); ++i) {
            const auto b = static_cast<unsigned char>(piece[i]);
            word.push_back(i + 1 == piece.size() ? byte_end_sym[b] : byte_sym[b]);
        }
        if (word.size() > kLongPiece) return bpe_long(word);
        std::vector<int> next;
        while (word.size() > 1) {
            int best_rank = std::numeric_limits<int>::max(), best_sym = -1;
            int first = -1, second = -1;
            for (size_t i = 0; i + 1 < word.size(); ++i) {
                auto it = merges.find(pair_key(word[i], word[i + 1]));
                if (it != merges.end() && it->second.first < best_rank) {
                    best_rank = it->second.first;
                    best_sym = it->second.second;
                    first = word[i];
                    second = word[i + 1];
                }
            }
            if (best_sym < 0) break;
            next.clear();
            for (size_t i = 0; i < word.size();) {
                if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
                    next.push_back(best_sym);
                    i += 2;
                } else {
                    next.push_back(word[i++]);
                }
            }
            word.swap(next);
        }
        return word;
    }

    // The same merges for long pieces in O(n log n): a linked list of symbols and a min-heap of
    // candidate pairs keyed by (rank, position). Equal to the loop above (which merges every
    // occurrence of the lowest-rank pair, left to right) whenever a merge's result only pairs
    // into higher ranks, as in any merges file produced by BPE training.
    std::vector<int> bpe_long(std::vector<int> sym) const {
        const int n = static_cast<int>(sym.size());
        std::vector<int> prev(n), next(n);
        for (int i = 0; i < n; ++i) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        struct Cand { int rank, pos, left, right; };
        auto later = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
        std::priority_queue<Cand, std::vector<Cand>, decltype(later)> heap(later);
        auto push = [&](int pos) {
            if (pos < 0 || next[pos] < 0) return;
            auto it = merges.find(pair_key(sym[pos], sym[next[pos]]));
            if (it != merges.end()) heap.push({it->second.first, pos, sym[pos], sym[next[pos]]});
        };
        for (int i = 0; i + 1 < n; ++i) push(i);
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            const int r = next[c.pos];
            if (sym[c.pos] != c.left || r < 0 || sym[r] != c.right) continue;  // stale
            sym[c.pos] = merges.at(pair_key(c.left, c.right)).second;
            sym[r] = -1;
            next[c.pos] = next[r];
            if (next[r] >= 0) prev[next[r]] = c.pos;
            push(prev[c.pos]);
            push(c.pos);
        }
        std::vector<int> out;
        for (int i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
        return out;
    }

    void bpe_cached(const std::string& piece, std::vector<int>& out) const {
        {
            std::lock_guard<std::mutex> lock(cache_mu);
            auto it = cache.find(piece);
            if (it != cache.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        std::vector<int> syms = bpe(piece);
        out.insert(out.end(), syms.begin(), syms.end());
        std::lock_guard<std::mutex> lock(cache_mu);
        if (cache.size() >= kCacheLimit) cache.clear();
        cache.emplace(piece, std::move(syms));
    }

    // Normalise one chunk of text (no special tokens inside) and append its BPE symbols.
    void tokenize_chunk(std::string_view chunk, ClipNormalization norm, std::vector<int>& out) const {
        const std::u32string raw = unicode::decode_utf8(chunk);
        const std::u32string text = unicode::to_lower(text::whitespace_clean(
            norm == ClipNormalization::Ftfy ? text::fix_text(raw) : text::bert_basic_clean(raw)));
        std::string piece;
        const size_t n = text.size();
        size_t i = 0;
        while (i < n) {
            const char32_t c = text[i];
            size_t j = i;
            if (c == '<' && match_literal(text, i, kStartOfText)) {
                out.push_back(sym_bos);
                i += std::string_view(kStartOfText).size();
                continue;
            }
            if (c == '<' && match_literal(text, i, kEndOfText)) {
                out.push_back(sym_eos);
                i += std::string_view(kEndOfText).size();
                continue;
            }
            if (c == '\'') {
                for (const char* lit : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
                    if (match_literal(text, i, lit)) { j = i + std::string_view(lit).size(); break; }
                }
            }
            if (j == i) {
                if (unicode::is_letter(c)) {
                    while (j < n && unicode::is_letter(text[j])) ++j;
                } else if (unicode::is_number(c)) {
                    j = i + 1;
                } else if (unicode::is_space(c)) {
                    ++i;
                    continue;
                } else {
                    while (j < n && !unicode::is_space(text[j]) && !unicode::is_letter(text[j]) &&
                           !unicode::is_number(text[j]))
                        ++j;
                }
            }
            piece.clear();
            for (size_t k = i; k < j; ++k) unicode::append_utf8(piece, text[k]);
            bpe_cached(piece, out);
            i = j;
        }
    }

    // Splits the raw text at special tokens (as transformers' added-token trie does, before any
    // normalisation) and tokenizes the chunks in between. Appends symbols.
    std::vector<int> tokenize(const std::string& text, const std::vector<std::pair<std::string, int>>& specials,
                              ClipNormalization norm) const {
        std::vector<int> out;
        size_t start = 0, i = 0;
        while (i < text.size()) {
            const std::pair<std::string, int>* hit = nullptr;
            for (const auto& sp : specials) {
                if (!sp.first.empty() && text.compare(i, sp.first.size(), sp.first) == 0 &&
                    (!hit || sp.first.size() > hit->first.size()))
                    hit = &sp;
            }
            if (!hit) { ++i; continue; }
            if (i > start) tokenize_chunk(std::string_view(text).substr(start, i - start), norm, out);
            out.push_back(hit->second);
            i += hit->first.size();
            start = i;
        }
        if (start < text.size()) tokenize_chunk(std::string_view(text).substr(start), norm, out);
        return out;
    }

    std::vector<std::pair<std::string, int>> special_symbols(const std::vector<std::string>& extra) const {
        std::vector<std::pair<std::string, int>> sp = {{kStartOfText, sym_bos}, {kEndOfText, sym_eos}};
        for (const auto& s : extra) {
            auto it = sym_index.find(s);
            NUANCE_CHECK(it != sym_index.end() && sym_id[it->second] >= 0, "CLIP tokenizer: special token '", s,
                         "' is not in the vocabulary");
            sp.emplace_back(s, it->second);
        }
        return sp;
    }

    int id_of(int sym) const { return sym_id[sym] >= 0 ? sym_id[sym] : unk; }
};

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json, const std::string& merges_txt) {
    const std::string vocab = read_file(vocab_json, "vocab");
    const std::string merges = read_file(merges_txt, "merges");
    return from_strings(vocab, merges, vocab_json, merges_txt);
}

ClipTokenizer ClipTokenizer::from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                          const std::string& vocab_name, const std::string& merges_name) {
    auto impl = std::make_unique<Impl>();
    // ---- vocab.json: {"token": id, ...}
    VocabReader reader;
    const bool parsed = nlohmann::json::sax_parse(vocab_json.begin(), vocab_json.end(), &reader);
    NUANCE_CHECK(parsed && reader.error.empty(), "CLIP tokenizer: vocab file '", vocab_name, "' ",
                 reader.error.empty() ? std::string("is not valid JSON") : reader.error);
    NUANCE_CHECK(reader.top_is_object && !reader.entries.empty(), "CLIP tokenizer: vocab file '", vocab_name,
                 "' must be a non-empty JSON object of token -> id");
    constexpr int64_t kMaxId = 1 << 24;
    int max_id = -1;
    impl->sym_text.reserve(reader.entries.size() + 512);
    impl->sym_index.reserve(reader.entries.size() + 512);
    for (auto& [tok, id] : reader.entries) {
        NUANCE_CHECK(id >= 0 && id < kMaxId, "CLIP tokenizer: vocab file '", vocab_name, "': token '", tok,
                     "' has id ", id, ", expected 0 <= id < ", kMaxId);
        const int sym = impl->intern(tok);
        impl->sym_id[sym] = static_cast<int>(id);  // a repeated key: the last id wins (as json.load)
        max_id = std::max(max_id, static_cast<int>(id));
    }
    impl->id_to_token.resize(static_cast<size_t>(max_id) + 1);
    for (size_t sym = 0; sym < impl->sym_text.size(); ++sym) {
        if (impl->sym_id[sym] >= 0) {
            impl->id_to_token[impl->sym_id[sym]] = impl->sym_text[sym];
            ++impl->vocab_entries;
        }
    }
    auto special = [&](const char* name) {
        auto it = impl->sym_index.find(name);
        NUANCE_CHECK(it != impl->sym_index.end(), "CLIP tokenizer: vocab file '", vocab_name, "' has no '", name,
                     "' token");
        return impl->sym_id[it->second];
    };
    impl->bos = special(kStartOfText);
    impl->eos = special(kEndOfText);
    impl->unk = impl->eos;  // transformers: unk_token = <|endoftext|>
    impl->sym_bos = impl->intern(kStartOfText);
    impl->sym_eos = impl->intern(kEndOfText);
    const auto byte_encoder = make_byte_encoder();
    for (int b = 0; b < 256; ++b) {
        impl->byte_sym[b] = impl->intern(byte_encoder[b]);
        impl->byte_end_sym[b] = impl->intern(byte_encoder[b] + kEndOfWord);
    }

    // ---- merges.txt: a header line, then "left right" per line in rank order
    size_t pos = 0, line_no = 0;
    size_t rank = 0;
    // transformers strips the whole text first, then drops line 0 whatever it says
    size_t begin = 0, end = merges_txt.size();
    while (begin < end && is_ascii_space(merges_txt[begin])) ++begin;
    while (end > begin && is_ascii_space(merges_txt[end - 1])) --end;
    const std::string_view body = merges_txt.substr(begin, end - begin);
    NUANCE_CHECK(!body.empty(), "CLIP tokenizer: merges file '", merges_name, "' is empty");
    while (pos <= body.size() && rank < kMaxMerges) {
        size_t nl = body.find('\n', pos);
        if (nl == std::string_view::npos) nl = body.size();
        const std::string_view line = body.substr(pos, nl - pos);
        ++line_no;
        pos = nl + 1;
        if (line_no == 1) continue;  // '#version: 0.2'
        std::string parts[3];
        int np = 0;
        for (size_t k = 0; k < line.size();) {
            while (k < line.size() && is_ascii_space(line[k])) ++k;
            const size_t s = k;
            while (k < line.size() && !is_ascii_space(line[k])) ++k;
            if (k > s) {
                if (np < 3) parts[np] = std::string(line.substr(s, k - s));
                ++np;
            }
        }
        if (np == 0) {  // a blank line: transformers keeps it as an empty, never-matching merge
            ++rank;
            continue;
        }
        NUANCE_CHECK(np == 2, "CLIP tokenizer: merges file '", merges_name, "' line ", line_no,
                     ": expected two space-separated symbols, got ", np);
        const int a = impl->intern(parts[0]);
        const int b = impl->intern(parts[1]);
        const int merged = impl->intern(parts[0] + parts[1]);
        impl->merges[Impl::pair_key(a, b)] = {static_cast<int>(rank), merged};  // a repeated pair: last rank wins
        ++rank;
    }
    NUANCE_CHECK(rank > 0, "CLIP tokenizer: merges file '", merges_name, "' has no merges after its header line");
    return ClipTokenizer(std::move(impl));
}

std::vector<int> ClipTokenizer::encode(const std::string& text) const { return encode(text, {}); }

std::vector<int> ClipTokenizer::encode(const std::string& text, const std::vector<std::string>& extra_special,
                                       ClipNormalization norm) const {
    const std::vector<int> syms = impl_->tokenize(text, impl_->special_symbols(extra_special), norm);
    std::vector<int> ids;
    ids.reserve(syms.size());
    for (int s : syms) ids.push_back(impl_->id_of(s));
    return ids;
}

std::vector<std::string> ClipTokenizer::bpe_tokens(const std::string& text) const {
    const std::vector<int> syms = impl_->tokenize(text, impl_->special_symbols({}), ClipNormalization::Ftfy);
    std::vector<std::string> out;
    out.reserve(syms.size());
    for (int s : syms) out.push_back(impl_->sym_text[s]);
    return out;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& text, int pad_id, int max_len,
                                                  bool pad_is_special, ClipNormalization norm) const {
    NUANCE_CHECK(max_len >= 2, "CLIP tokenizer: max_len must be >= 2 (BOS + EOS), got ", max_len);
    std::vector<std::string> extra;
    if (pad_is_special && pad_id != impl_->bos && pad_id != impl_->eos) {
        const std::string& pad_text = token_text(pad_id);
        NUANCE_CHECK(!pad_text.empty(), "CLIP tokenizer: pad id ", pad_id, " is not in the vocabulary");
        extra.push_back(pad_text);
    }
    const std::vector<int> ids = encode(text, extra, norm);
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(max_len));
    out.push_back(impl_->bos);
    const size_t n = std::min(ids.size(), static_cast<size_t>(max_len - 2));
    out.insert(out.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n));
    out.push_back(impl_->eos);
    out.resize(static_cast<size_t>(max_len), pad_id);
    return out;
}

int ClipTokenizer::bos_id() const { return impl_->bos; }
int ClipTokenizer::eos_id() const { return impl_->eos; }
int ClipTokenizer::vocab_size() const { return impl_->vocab_entries; }

int ClipTokenizer::token_id(const std::string& token) const {
    auto it = impl_->sym_index.find(token);
    return it == impl_->sym_index.end() ? -1 : impl_->sym_id[it->second];
}

const std::string& ClipTokenizer::token_text(int id) const {
    static const std::string kEmpty;
    if (id < 0 || static_cast<size_t>(id) >= impl_->id_to_token.size()) return kEmpty;
    return impl_->id_to_token[id];
}

}  // namespace nuance
