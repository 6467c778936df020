// T5Tokenizer from a diffusers folder: spiece.model, or the HF `tokenizers` JSON form of the same model
// (tokenizer.json). The JSON is hostile input: bounded size (io/json_file.h), every field type-checked, the piece
// count and lengths bounded as for spiece.model, the charsmap checked by SpmUnigram's trie reader.
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_file.h"
#include "text/t5_spiece_model.h"
#include "text/t5_tokenizer.h"

namespace nuance {

namespace {

// RFC 4648 base64 with '=' padding (what tokenizers writes for precompiled_charsmap); whitespace is not allowed.
std::string decode_base64(const std::string& in, const std::string& what) {
    auto value = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    NUANCE_CHECK(in.size() % 4 == 0, what, ": base64 text of ", in.size(), " characters (not a multiple of 4)");
    std::string out;
    out.reserve(in.size() / 4 * 3);
    for (size_t i = 0; i < in.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = in[i + (size_t)k];
            if (c == '=' && i + 4 == in.size() && k >= 2) {
                v[k] = 0;
                ++pad;
                continue;
            }
            NUANCE_CHECK(pad == 0 && (v[k] = value(c)) >= 0, what, ": invalid base64 character at offset ", i + (size_t)k);
        }
        const uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out += (char)(n >> 16 & 0xff);
        if (pad < 2) out += (char)(n >> 8 & 0xff);
        if (pad < 1) out += (char)(n & 0xff);
    }
    return out;
}

const nlohmann::json& field(const nlohmann::json& obj, const char* key, const std::string& where) {
    NUANCE_CHECK(obj.is_object() && obj.contains(key), where, ": no \"", key, "\"");
    return obj.at(key);
}

// The charsmap of a Precompiled normalizer (alone or in a Sequence); "" when there is none.
std::string charsmap_of(const nlohmann::json& norm, const std::string& path) {
    if (norm.is_null()) return "";
    const std::string where = path + ": normalizer";
    const nlohmann::json& type = field(norm, "type", where);
    NUANCE_CHECK(type.is_string(), where, ": \"type\" is not a string");
    const std::string t = type.get<std::string>();
    if (t == "Precompiled") {
        const nlohmann::json& c = field(norm, "precompiled_charsmap", where);
        if (c.is_null()) return "";
        NUANCE_CHECK(c.is_string(), where, ": \"precompiled_charsmap\" is not a string");
        return decode_base64(c.get<std::string>(), where + " precompiled_charsmap");
    }
    // transformers' T5Converter: Sequence[Precompiled, Strip(right), Replace(" {2,}", "▁")]; the last two are
    // sentencepiece's remove_extra_whitespaces, which the unigram normalizer does anyway.
    if (t == "Strip" || t == "Replace") return "";
    NUANCE_CHECK_CODE(t == "Sequence", Unsupported, where, ": type \"", t, "\" is not one a SentencePiece T5 ",
                      "tokenizer uses (Precompiled, Strip, Replace or a Sequence of them)");
    const nlohmann::json& list = field(norm, "normalizers", where);
    NUANCE_CHECK(list.is_array() && list.size() <= 16, where, ": \"normalizers\" is not an array of at most 16");
    std::string out;
    for (const nlohmann::json& n : list) {
        NUANCE_CHECK_CODE(!(n.is_object() && n.value("type", "") == "Sequence"), Unsupported, where,
                          ": nested Sequence normalizers");
        std::string c = charsmap_of(n, path);
        if (c.empty()) continue;
        NUANCE_CHECK_CODE(out.empty(), Unsupported, where, ": more than one Precompiled normalizer");
        out = std::move(c);
    }
    return out;
}

}  // namespace

T5Tokenizer T5Tokenizer::from_tokenizer_json(const std::string& path) {
    const nlohmann::json j = read_json_object(path);
    const nlohmann::json& model = field(j, "model", path);
    const std::string where = path + ": model";
    NUANCE_CHECK_CODE(field(model, "type", where).is_string() && model.at("type").get<std::string>() == "Unigram",
                      Unsupported, where, ": type ", model.at("type").dump(), " is not \"Unigram\" (a T5 ",
                      "SentencePiece tokenizer)");
    const nlohmann::json& vocab = field(model, "vocab", where);
    NUANCE_CHECK(vocab.is_array() && !vocab.empty(), where, ": \"vocab\" is not a non-empty array");
    NUANCE_CHECK(vocab.size() <= SpieceModel::kMaxPieces + 1000, where, ": ", vocab.size(), " vocab entries (at most ",
                 SpieceModel::kMaxPieces + 1000, ")");
    SpieceModel m;
    std::vector<std::string> extra;  // the trailing <extra_id_N> entries
    for (size_t i = 0; i < vocab.size(); ++i) {
        const nlohmann::json& e = vocab[i];
        NUANCE_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_number(), where, ": vocab entry ",
                     i, " is not a [piece, score] pair");
        std::string piece = e[0].get<std::string>();
        NUANCE_CHECK(!piece.empty() && piece.size() <= SpieceModel::kMaxPieceBytes, where, ": vocab entry ", i,
                     " has a piece of ", piece.size(), " bytes (1..", SpieceModel::kMaxPieceBytes, ")");
        const double score = e[1].get<double>();
        NUANCE_CHECK(std::isfinite(score), where, ": vocab entry ", i, " ('", piece, "') has a score that is not finite");
        if (piece.rfind("<extra_id_", 0) == 0 || !extra.empty()) {
            extra.push_back(std::move(piece));
            continue;
        }
        NUANCE_CHECK(m.pieces.size() < SpieceModel::kMaxPieces, where, ": more than ", SpieceModel::kMaxPieces,
                     " pieces");
        m.pieces.push_back({std::move(piece), (float)score, SpiecePieceType::Normal});
    }
    // T5Tokenizer numbers <extra_id_i> as pieces + extra - 1 - i: the file must list them in that order.
    NUANCE_CHECK(extra.size() <= 1000, where, ": ", extra.size(), " <extra_id_N> entries (at most 1000)");
    for (size_t k = 0; k < extra.size(); ++k)
        NUANCE_CHECK_CODE(extra[k] == "<extra_id_" + std::to_string(extra.size() - 1 - k) + ">", Unsupported, where,
                          ": vocab entry ", m.pieces.size() + k, " is '", extra[k], "', expected <extra_id_",
                          extra.size() - 1 - k, "> (the extra ids follow the pieces, counting down)");
    const nlohmann::json& unk = field(model, "unk_id", where);
    NUANCE_CHECK(unk.is_number_integer() && unk.get<int64_t>() >= 0 && unk.get<int64_t>() < (int64_t)m.pieces.size(),
                 where, ": unk_id ", unk.dump(), " is not a piece id (0..", m.pieces.size() - 1, ")");
    m.pieces[(size_t)unk.get<int64_t>()].type = SpiecePieceType::Unknown;
    if (model.contains("byte_fallback")) {
        NUANCE_CHECK(model.at("byte_fallback").is_boolean(), where, ": \"byte_fallback\" is not a boolean");
        m.byte_fallback = model.at("byte_fallback").get<bool>();
    }
    // Special added tokens that are pieces (<pad>, </s>) are sentencepiece CONTROL pieces: never produced from text.
    if (j.contains("added_tokens")) {
        const nlohmann::json& added = j.at("added_tokens");
        NUANCE_CHECK(added.is_array() && added.size() <= vocab.size() + 1000, path, ": \"added_tokens\" is not an ",
                     "array of at most the vocabulary's size");
        for (const nlohmann::json& a : added) {
            NUANCE_CHECK(a.is_object() && a.contains("id") && a.at("id").is_number_integer() && a.contains("content") &&
                             a.at("content").is_string(),
                         path, ": an added_tokens entry without an integer \"id\" and a string \"content\"");
            const int64_t id = a.at("id").get<int64_t>();
            if (id < 0 || id >= (int64_t)m.pieces.size() || !a.value("special", false)) continue;
            SpiecePiece& p = m.pieces[(size_t)id];
            NUANCE_CHECK(p.piece == a.at("content").get<std::string>(), path, ": added token ", id, " is '",
                         a.at("content").get<std::string>(), "' but vocab entry ", id, " is '", p.piece, "'");
            if (p.type == SpiecePieceType::Normal) p.type = SpiecePieceType::Control;
        }
    }
    if (j.contains("normalizer")) m.precompiled_charsmap = charsmap_of(j.at("normalizer"), path);
    if (j.contains("pre_tokenizer") && j.at("pre_tokenizer").is_object()) {
        const nlohmann::json& pre = j.at("pre_tokenizer");
        const std::string type = pre.value("type", "");
        NUANCE_CHECK_CODE(type == "Metaspace", Unsupported, path, ": pre_tokenizer type \"", type,
                          "\" (a SentencePiece T5 tokenizer has Metaspace)");
        if (pre.contains("prepend_scheme") && pre.at("prepend_scheme").is_string())
            m.add_dummy_prefix = pre.at("prepend_scheme").get<std::string>() != "never";
        else if (pre.contains("add_prefix_space") && pre.at("add_prefix_space").is_boolean())
            m.add_dummy_prefix = pre.at("add_prefix_space").get<bool>();
    }
    return from_model(std::move(m), path, (int)extra.size());
}

std::unique_ptr<T5Tokenizer> T5Tokenizer::from_folder(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path spiece = fs::path(dir) / "spiece.model", json = fs::path(dir) / "tokenizer.json";
    if (fs::exists(fs::symlink_status(spiece, ec)))
        return std::make_unique<T5Tokenizer>(from_file(spiece.string()));
    if (fs::exists(fs::symlink_status(json, ec)))
        return std::make_unique<T5Tokenizer>(from_tokenizer_json(json.string()));
    return nullptr;
}

}  // namespace nuance
