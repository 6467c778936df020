#include "text/prompt_parser.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "text/unicode.h"

namespace nuance {

namespace {

constexpr double kRoundBracketMultiplier = 1.1;
constexpr double kSquareBracketMultiplier = 1 / 1.1;
constexpr int kCommaPaddingBacktrack = 20;  // A1111 opts.comma_padding_backtrack default

struct Run {
    std::u32string text;
    double weight;
};

bool is_word_char(char32_t c) {  // Python re's \w on str
    return c == '_' || unicode::is_letter(c) || unicode::is_number(c);
}

// re.split(r"\s*\bBREAK\b\s*", text)
std::vector<std::u32string> split_break(const std::u32string& s) {
    static const std::u32string kBreak = U"BREAK";
    std::vector<std::u32string> parts;
    size_t last = 0;  // end of the previous match
    size_t from = 0;  // where to look for the next "BREAK"
    while (true) {
        const size_t b = s.find(kBreak, from);
        if (b == std::u32string::npos) break;
        const size_t e = b + kBreak.size();
        const bool left_ok = b == 0 || !is_word_char(s[b - 1]);
        const bool right_ok = e == s.size() || !is_word_char(s[e]);
        if (!left_ok || !right_ok) {
            from = b + 1;
            continue;
        }
        size_t ms = b;  // the match starts where the whitespace run before BREAK starts
        while (ms > last && unicode::is_space(s[ms - 1])) --ms;
        size_t me = e;
        while (me < s.size() && unicode::is_space(s[me])) ++me;
        parts.push_back(s.substr(last, ms - last));
        last = from = me;
    }
    parts.push_back(s.substr(last));
    return parts;
}

// Matches ':\s*([+-]?[.\d]+)\s*\)' at s[i]; returns the end and the number's text.
bool match_weight(const std::u32string& s, size_t i, size_t& end, std::string& number) {
    if (s[i] != ':') return false;
    size_t j = i + 1;
    while (j < s.size() && unicode::is_space(s[j])) ++j;
    const size_t ns = j;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    const size_t ds = j;
    while (j < s.size() && (s[j] == '.' || (s[j] >= '0' && s[j] <= '9'))) ++j;
    if (j == ds) return false;
    const size_t ne = j;
    while (j < s.size() && unicode::is_space(s[j])) ++j;
    if (j >= s.size() || s[j] != ')') return false;
    number.clear();
    for (size_t k = ns; k < ne; ++k) number.push_back(static_cast<char>(s[k]));
    end = j + 1;
    return true;
}

double parse_weight(const std::string& number, const std::string& prompt) {
    // Python float(): at most one '.', at least one digit (the regex already allows only [+-.0-9])
    int dots = 0, digits = 0;
    for (char c : number) {
        dots += c == '.';
        digits += c >= '0' && c <= '9';
    }
    NUANCE_CHECK(dots <= 1 && digits >= 1, "prompt attention: invalid weight '", number, "' in prompt '", prompt, "'");
    return std::strtod(number.c_str(), nullptr);
}

bool is_special(char32_t c) { return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':'; }

}  // namespace

std::vector<std::pair<std::string, float>> parse_prompt_attention(const std::string& prompt) {
    const std::u32string s = unicode::decode_utf8(prompt);
    std::vector<Run> res;
    std::vector<size_t> round_brackets, square_brackets;
    auto multiply_range = [&](size_t start, double m) {
        for (size_t p = start; p < res.size(); ++p) res[p].weight *= m;
    };
    auto add_text = [&](const std::u32string& text) {
        const std::vector<std::u32string> parts = split_break(text);
        for (size_t k = 0; k < parts.size(); ++k) {
            if (k > 0) res.push_back({U"BREAK", -1.0});
            res.push_back({parts[k], 1.0});
        }
    };

    size_t i = 0;
    while (i < s.size()) {
        const char32_t c = s[i];
        if (c == '\\') {
            // \( \) \[ \] \\ -> the literal char; a lone backslash -> nothing
            if (i + 1 < s.size() && (s[i + 1] == '(' || s[i + 1] == ')' || s[i + 1] == '[' || s[i + 1] == ']' ||
                                     s[i + 1] == '\\')) {
                res.push_back({std::u32string(1, s[i + 1]), 1.0});
                i += 2;
            } else {
                res.push_back({U"", 1.0});
                i += 1;
            }
            continue;
        }
        if (c == '(') { round_brackets.push_back(res.size()); ++i; continue; }
        if (c == '[') { square_brackets.push_back(res.size()); ++i; continue; }
        size_t end = 0;
        std::string number;
        if (c == ':' && match_weight(s, i, end, number)) {
            if (!round_brackets.empty()) {
                multiply_range(round_brackets.back(), parse_weight(number, prompt));
                round_brackets.pop_back();
            } else {
                add_text(s.substr(i, end - i));
            }
            i = end;
            continue;
        }
        if (c == ')' && !round_brackets.empty()) {
            multiply_range(round_brackets.back(), kRoundBracketMultiplier);
            round_brackets.pop_back();
            ++i;
            continue;
        }
        if (c == ']' && !square_brackets.empty()) {
            multiply_range(square_brackets.back(), kSquareBracketMultiplier);
            square_brackets.pop_back();
            ++i;
            continue;
        }
        if (c == ')' || c == ']' || c == ':') {  // unmatched bracket or a plain ':'
            add_text(std::u32string(1, c));
            ++i;
            continue;
        }
        size_t j = i;
        while (j < s.size() && !is_special(s[j])) ++j;
        add_text(s.substr(i, j - i));
        i = j;
    }
    for (size_t pos : round_brackets) multiply_range(pos, kRoundBracketMultiplier);
    for (size_t pos : square_brackets) multiply_range(pos, kSquareBracketMultiplier);
    if (res.empty()) res.push_back({U"", 1.0});

    // merge runs of identical weights
    for (size_t k = 0; k + 1 < res.size();) {
        if (res[k].weight == res[k + 1].weight) {
            res[k].text += res[k + 1].text;
            res.erase(res.begin() + static_cast<std::ptrdiff_t>(k) + 1);
        } else {
            ++k;
        }
    }
    std::vector<std::pair<std::string, float>> out;
    out.reserve(res.size());
    for (const Run& r : res) out.emplace_back(unicode::encode_utf8(r.text), static_cast<float>(r.weight));
    return out;
}

PromptChunks tokenize_weighted(const ClipTokenizer& tok, const std::string& prompt, int pad_id, int chunk_len,
                               const std::vector<PromptEmbeddingName>* embeddings) {
    NUANCE_CHECK(chunk_len >= 1, "tokenize_weighted: chunk_len must be >= 1, got ", chunk_len);
    const std::vector<std::pair<std::string, float>> parsed = parse_prompt_attention(prompt);
    const int bos = tok.bos_id(), eos = tok.eos_id();
    const int comma = tok.token_id(",</w>");
    const size_t len = static_cast<size_t>(chunk_len);

    PromptChunks out;
    std::vector<int64_t> tokens;
    std::vector<float> mults;
    std::vector<PromptFix> fixes;  // offsets into `tokens` (BOS not counted yet)
    long last_comma = -1;
    // Longest names first (A1111 sorts its per-first-token lists the same way).
    std::vector<const PromptEmbeddingName*> names;
    if (embeddings)
        for (const PromptEmbeddingName& e : *embeddings) {
            NUANCE_CHECK(e.vectors <= chunk_len, "embedding '", e.name, "' has ", e.vectors,
                         " vectors; at most ", chunk_len, " fit in one 77-token window");
            NUANCE_CHECK(e.vectors >= 1, "embedding '", e.name, "' has no vectors");
            if (!e.ids.empty()) names.push_back(&e);
        }
    std::stable_sort(names.begin(), names.end(), [](const PromptEmbeddingName* a, const PromptEmbeddingName* b) {
        return a->ids.size() > b->ids.size();
    });
    auto next_chunk = [&] {
        std::vector<int64_t> ids;
        std::vector<float> w;
        ids.reserve(len + 2);
        w.reserve(len + 2);
        ids.push_back(bos);
        w.push_back(1.0f);
        ids.insert(ids.end(), tokens.begin(), tokens.end());
        w.insert(w.end(), mults.begin(), mults.end());
        ids.resize(len + 1, eos);  // A1111 pads the 75 slots with EOS, then appends EOS
        w.resize(len + 1, 1.0f);
        ids.push_back(eos);
        w.push_back(1.0f);
        // sd_hijack_clip.process_tokens (when pad != EOS): everything after the first EOS -> pad
        if (pad_id != eos) {
            size_t first_eos = 0;
            while (ids[first_eos] != eos) ++first_eos;
            for (size_t k = first_eos + 1; k < ids.size(); ++k) ids[k] = pad_id;
        }
        for (PromptFix& f : fixes) f.offset += 1;  // after BOS
        out.ids.push_back(std::move(ids));
        out.weights.push_back(std::move(w));
        out.fixes.push_back(std::move(fixes));
        fixes.clear();
        tokens.clear();
        mults.clear();
        last_comma = -1;
    };

    for (const auto& [text, weight] : parsed) {
        if (text == "BREAK" && weight == -1.0f) {
            next_chunk();
            continue;
        }
        const std::vector<int> ids = tok.encode(text);
        for (size_t pos = 0; pos < ids.size();) {
            const int id = ids[pos];
            if (id == comma) {
                last_comma = static_cast<long>(tokens.size());
            } else if (tokens.size() == len && last_comma != -1 &&
                       static_cast<long>(tokens.size()) - last_comma <= kCommaPaddingBacktrack) {
                // move the words after the last comma to the next chunk
                const size_t brk = static_cast<size_t>(last_comma) + 1;
                std::vector<int64_t> reloc_tokens(tokens.begin() + static_cast<std::ptrdiff_t>(brk), tokens.end());
                std::vector<float> reloc_mults(mults.begin() + static_cast<std::ptrdiff_t>(brk), mults.end());
                std::vector<PromptFix> reloc_fixes, kept;
                for (PromptFix f : fixes) {
                    if (f.offset >= (int64_t)brk) {
                        f.offset -= (int64_t)brk;
                        reloc_fixes.push_back(f);
                    } else {
                        kept.push_back(f);
                    }
                }
                fixes = std::move(kept);
                tokens.resize(brk);
                mults.resize(brk);
                next_chunk();
                tokens = std::move(reloc_tokens);
                mults = std::move(reloc_mults);
                fixes = std::move(reloc_fixes);
            }
            if (tokens.size() == len) next_chunk();
            const PromptEmbeddingName* hit = nullptr;
            for (const PromptEmbeddingName* e : names)
                if (e->ids.size() <= ids.size() - pos && std::equal(e->ids.begin(), e->ids.end(), ids.begin() + (long)pos)) {
                    hit = e;
                    break;
                }
            if (!hit) {
                tokens.push_back(id);
                mults.push_back(weight);
                ++pos;
                continue;
            }
            if (tokens.size() + (size_t)hit->vectors > len) next_chunk();
            fixes.push_back(PromptFix{(int64_t)tokens.size(), hit->vectors, hit->name});
            tokens.insert(tokens.end(), (size_t)hit->vectors, 0);
            mults.insert(mults.end(), (size_t)hit->vectors, weight);
            pos += hit->ids.size();
        }
    }
    if (!tokens.empty() || out.ids.empty()) next_chunk();
    return out;
}

}  // namespace nuance
