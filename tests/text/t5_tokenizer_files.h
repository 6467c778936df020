// Test helper: the built-in T5 vocabulary (assets/t5/spiece.model) written out as a diffusers tokenizer folder's
// files: spiece.model (a copy) and tokenizer.json (the HF `tokenizers` form transformers' T5Converter writes:
// Unigram vocab in id order + <extra_id_99..0>, Sequence[Precompiled, Strip, Replace], Metaspace), with an optional
// edit of the pieces.
#pragma once
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "../test_paths.h"
#include "text/t5_spiece_model.h"

namespace nuance::test {

inline std::string builtin_spiece_path() {
    return (std::filesystem::path(NUANCE_TEST_DATA).parent_path().parent_path() / "assets/t5/spiece.model").string();
}

inline std::string base64(const std::string& in) {
    static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t n = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < in.size()) n |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < in.size()) n |= (uint32_t)(uint8_t)in[i + 2];
        out += k[n >> 18 & 63];
        out += k[n >> 12 & 63];
        out += i + 1 < in.size() ? k[n >> 6 & 63] : '=';
        out += i + 2 < in.size() ? k[n & 63] : '=';
    }
    return out;
}

// The tokenizer.json of the built-in vocabulary; `edit` may change the pieces first.
inline nlohmann::json builtin_tokenizer_json(const std::function<void(SpieceModel&)>& edit = {}) {
    SpieceModel m = SpieceModel::load(builtin_spiece_path());
    if (edit) edit(m);
    nlohmann::json vocab = nlohmann::json::array(), added = nlohmann::json::array();
    for (size_t i = 0; i < m.pieces.size(); ++i) {
        vocab.push_back({m.pieces[i].piece, (double)m.pieces[i].score});
        if (m.pieces[i].type == SpiecePieceType::Control || m.pieces[i].type == SpiecePieceType::Unknown)
            added.push_back({{"id", i}, {"content", m.pieces[i].piece}, {"special", true}});
    }
    for (int k = 99; k >= 0; --k) {
        const std::string t = "<extra_id_" + std::to_string(k) + ">";
        added.push_back({{"id", vocab.size()}, {"content", t}, {"special", true}});
        vocab.push_back({t, 0.0});
    }
    nlohmann::json j;
    j["version"] = "1.0";
    j["added_tokens"] = added;
    j["normalizer"] = {{"type", "Sequence"},
                       {"normalizers",
                        {{{"type", "Precompiled"}, {"precompiled_charsmap", base64(m.precompiled_charsmap)}},
                         {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}},
                         {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", "\xe2\x96\x81"}}}}};
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xe2\x96\x81"}, {"prepend_scheme", "always"}};
    j["model"] = {{"type", "Unigram"}, {"unk_id", 2}, {"vocab", vocab}, {"byte_fallback", false}};
    return j;
}

inline void write_file(const std::string& path, const std::string& bytes) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace nuance::test
