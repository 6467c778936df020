// SentencePiece's ModelProto (`spiece.model`) as far as a unigram encoder needs it: the pieces with their scores
// and types, the normalizer spec (precompiled charsmap and whitespace flags) and the trainer-spec fields that
// change encoding. A tiny protobuf wire-format reader; the file is hostile: every varint, length and count is
// bounded and an error names the field and the values.
//
// Fields read (sentencepiece_model.proto):
//   ModelProto     1 pieces (repeated SentencePiece), 2 trainer_spec, 3 normalizer_spec
//   SentencePiece  1 piece (string), 2 score (float), 3 type (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
//                  UNUSED 5, BYTE 6)
//   TrainerSpec    3 model_type (UNIGRAM 1, BPE 2, WORD 3, CHAR 4), 24 treat_whitespace_as_suffix,
//                  35 byte_fallback
//   NormalizerSpec 1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4 remove_extra_whitespaces,
//                  5 escape_whitespaces (the three flags default to true)
// Everything else is skipped by wire type.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nuance {

enum class SpiecePieceType : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

struct SpiecePiece {
    std::string piece;
    float score = 0.0f;
    SpiecePieceType type = SpiecePieceType::Normal;
};

struct SpieceModel {
    static constexpr size_t kMaxPieces = 1u << 20;         // real vocabularies: 32k (T5) .. 256k
    static constexpr size_t kMaxPieceBytes = 1024;          // sentencepiece's max_sentencepiece_length is 16 chars
    static constexpr size_t kMaxFileBytes = size_t{1} << 30;  // whole model file

    std::vector<SpiecePiece> pieces;
    int model_type = 1;  // UNIGRAM
    bool treat_whitespace_as_suffix = false;
    bool byte_fallback = false;
    std::string normalizer_name;
    std::string precompiled_charsmap;
    bool add_dummy_prefix = true;
    bool remove_extra_whitespaces = true;
    bool escape_whitespaces = true;

    // Parses the serialized ModelProto; `name` names the file in errors ("spiece.model: ...").
    static SpieceModel parse(std::string_view bytes, const std::string& name);
    static SpieceModel load(const std::string& path);  // reads at most kMaxFileBytes
};

}  // namespace nuance
