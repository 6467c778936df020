// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): each field is a varint tag
// (field_number << 3 | wire_type) followed by a varint (0), 8 bytes (1), a varint length + bytes (2) or 4 bytes (5).
#include "text/t5_spiece_model.h"

#include <cstring>

#include "core/error.h"
#include "io/weight_file.h"

namespace nuance {

namespace {

// One message's bytes; `where` names it in errors ("spiece.model: pieces[12]").
class Reader {
public:
    Reader(std::string_view bytes, std::string where) : p_(bytes), where_(std::move(where)) {}
    bool done() const { return pos_ >= p_.size(); }
    const std::string& where() const { return where_; }

    uint64_t varint(const char* field) {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            NUANCE_CHECK(pos_ < p_.size(), where_, ": truncated varint in field '", field, "' at byte ", pos_);
            const uint8_t b = (uint8_t)p_[pos_++];
            if (shift == 63 && (b & 0x7e))
                fail(ErrorCode::InvalidArgument, where_, ": varint of field '", field, "' overflows 64 bits at byte ",
                     pos_ - 1);
            v |= (uint64_t)(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        fail(ErrorCode::InvalidArgument, where_, ": varint of field '", field, "' is longer than 10 bytes at byte ",
             pos_);
    }
    std::string_view bytes(const char* field, size_t max_len) {
        const size_t at = pos_;
        const uint64_t n = varint(field);
        NUANCE_CHECK(n <= p_.size() - pos_, where_, ": field '", field, "' at byte ", at, " claims ", n,
                     " bytes but only ", p_.size() - pos_, " remain");
        NUANCE_CHECK(n <= max_len, where_, ": field '", field, "' is ", n, " bytes, the limit is ", max_len);
        std::string_view s = p_.substr(pos_, (size_t)n);
        pos_ += (size_t)n;
        return s;
    }
    float fixed32_float(const char* field) {
        NUANCE_CHECK(p_.size() - pos_ >= 4, where_, ": truncated float in field '", field, "' at byte ", pos_);
        uint32_t u = 0;
        for (int i = 0; i < 4; ++i) u |= (uint32_t)(uint8_t)p_[pos_ + (size_t)i] << (8 * i);
        pos_ += 4;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
    // Skips a field of an unread number.
    void skip(uint32_t wire, uint64_t field) {
        switch (wire) {
            case 0: varint("(unknown varint)"); return;
            case 1:
                NUANCE_CHECK(p_.size() - pos_ >= 8, where_, ": truncated fixed64 field ", field, " at byte ", pos_);
                pos_ += 8;
                return;
            case 2: bytes("(unknown bytes)", p_.size()); return;
            case 5:
                NUANCE_CHECK(p_.size() - pos_ >= 4, where_, ": truncated fixed32 field ", field, " at byte ", pos_);
                pos_ += 4;
                return;
            default:
                fail(ErrorCode::InvalidArgument, where_, ": field ", field, " has unsupported wire type ", wire,
                     " at byte ", pos_);
        }
    }
    // Reads a tag; returns (field number, wire type).
    std::pair<uint64_t, uint32_t> tag() {
        const size_t at = pos_;
        const uint64_t t = varint("tag");
        const uint64_t field = t >> 3;
        NUANCE_CHECK(field >= 1 && field <= 536870911u, where_, ": invalid field number ", field, " at byte ", at);
        return {field, (uint32_t)(t & 7)};
    }
    void expect_wire(uint32_t got, uint32_t want, const char* field) {
        NUANCE_CHECK(got == want, where_, ": field '", field, "' has wire type ", got, ", expected ", want,
                     " (at byte ", pos_, ")");
    }

private:
    std::string_view p_;
    size_t pos_ = 0;
    std::string where_;
};

SpiecePiece parse_piece(std::string_view msg, const std::string& where) {
    Reader r(msg, where);
    SpiecePiece sp;
    bool has_piece = false;
    while (!r.done()) {
        auto [field, wire] = r.tag();
        if (field == 1) {
            r.expect_wire(wire, 2, "piece");
            sp.piece = std::string(r.bytes("piece", SpieceModel::kMaxPieceBytes));
            has_piece = true;
        } else if (field == 2) {
            r.expect_wire(wire, 5, "score");
            sp.score = r.fixed32_float("score");
            NUANCE_CHECK(sp.score == sp.score && sp.score > -1e30f && sp.score < 1e30f, where, ": score ", sp.score,
                         " is not a finite number");
        } else if (field == 3) {
            r.expect_wire(wire, 0, "type");
            const uint64_t t = r.varint("type");
            NUANCE_CHECK(t >= 1 && t <= 6, where, ": piece type ", t, " is not one of 1..6");
            sp.type = (SpiecePieceType)t;
        } else {
            r.skip(wire, field);
        }
    }
    NUANCE_CHECK(has_piece, where, ": no 'piece' string");
    NUANCE_CHECK(!sp.piece.empty(), where, ": empty 'piece' string");
    return sp;
}

bool read_bool(Reader& r, uint32_t wire, const char* field) {
    r.expect_wire(wire, 0, field);
    return r.varint(field) != 0;
}

void parse_trainer(std::string_view msg, const std::string& where, SpieceModel& m) {
    Reader r(msg, where);
    while (!r.done()) {
        auto [field, wire] = r.tag();
        if (field == 3) {
            r.expect_wire(wire, 0, "model_type");
            const uint64_t t = r.varint("model_type");
            NUANCE_CHECK(t >= 1 && t <= 4, where, ": model_type ", t, " is not one of 1..4");
            m.model_type = (int)t;
        } else if (field == 24) {
            m.treat_whitespace_as_suffix = read_bool(r, wire, "treat_whitespace_as_suffix");
        } else if (field == 35) {
            m.byte_fallback = read_bool(r, wire, "byte_fallback");
        } else {
            r.skip(wire, field);
        }
    }
}

void parse_normalizer(std::string_view msg, const std::string& where, SpieceModel& m) {
    Reader r(msg, where);
    while (!r.done()) {
        auto [field, wire] = r.tag();
        if (field == 1) {
            r.expect_wire(wire, 2, "name");
            m.normalizer_name = std::string(r.bytes("name", 4096));
        } else if (field == 2) {
            r.expect_wire(wire, 2, "precompiled_charsmap");
            m.precompiled_charsmap = std::string(r.bytes("precompiled_charsmap", SpieceModel::kMaxFileBytes));
        } else if (field == 3) {
            m.add_dummy_prefix = read_bool(r, wire, "add_dummy_prefix");
        } else if (field == 4) {
            m.remove_extra_whitespaces = read_bool(r, wire, "remove_extra_whitespaces");
        } else if (field == 5) {
            m.escape_whitespaces = read_bool(r, wire, "escape_whitespaces");
        } else {
            r.skip(wire, field);
        }
    }
}

}  // namespace

SpieceModel SpieceModel::parse(std::string_view bytes, const std::string& name) {
    NUANCE_CHECK(!bytes.empty(), name, ": empty SentencePiece model");
    NUANCE_CHECK(bytes.size() <= kMaxFileBytes, name, ": ", bytes.size(), " bytes, the limit for a SentencePiece "
                 "model is ", kMaxFileBytes);
    SpieceModel m;
    Reader r(bytes, name);
    while (!r.done()) {
        auto [field, wire] = r.tag();
        if (field == 1) {
            r.expect_wire(wire, 2, "pieces");
            NUANCE_CHECK(m.pieces.size() < kMaxPieces, name, ": more than ", kMaxPieces, " pieces");
            const std::string where = str(name, ": pieces[", m.pieces.size(), "]");
            m.pieces.push_back(parse_piece(r.bytes("pieces", kMaxPieceBytes + 64), where));
        } else if (field == 2) {
            r.expect_wire(wire, 2, "trainer_spec");
            parse_trainer(r.bytes("trainer_spec", bytes.size()), name + ": trainer_spec", m);
        } else if (field == 3) {
            r.expect_wire(wire, 2, "normalizer_spec");
            parse_normalizer(r.bytes("normalizer_spec", bytes.size()), name + ": normalizer_spec", m);
        } else {
            r.skip(wire, field);
        }
    }
    NUANCE_CHECK(!m.pieces.empty(), name, ": no pieces (not a SentencePiece model?)");
    NUANCE_CHECK_CODE(m.model_type == 1, Unsupported, name, ": model_type ", m.model_type,
                      " is not supported (only UNIGRAM = 1, as T5's)");
    NUANCE_CHECK_CODE(!m.treat_whitespace_as_suffix, Unsupported, name,
                      ": treat_whitespace_as_suffix is not supported");
    NUANCE_CHECK_CODE(!m.byte_fallback, Unsupported, name, ": byte_fallback is not supported");
    return m;
}

SpieceModel SpieceModel::load(const std::string& path) {
    return parse(read_small_file(path, kMaxFileBytes, "SentencePiece model"), path);
}

}  // namespace nuance
