// UNet: CompVis/SGM openaimodel.UNetModel keys <-> diffusers UNet2DConditionModel keys.
//
// The original is a flat list of TimestepEmbedSequential slots:
//   input_blocks.0.0                  conv_in
//   input_blocks.K.0 [+ K.1]          ResBlock [+ SpatialTransformer]   (num_res_blocks per level)
//   input_blocks.K.0.op               Downsample (ends every level but the last)
//   middle_block.0/1/2                ResBlock, SpatialTransformer, ResBlock
//   output_blocks.K.0 [+ .1] [+ .1|.2.conv]  ResBlock [+ SpatialTransformer] [+ Upsample]  (num_res_blocks+1 per level)
//   time_embed.0/2, label_emb.0.0/0.2 (SDXL ADM), out.0 (GroupNorm), out.2 (conv)
// Levels are found by walking the slots in order (a Downsample / Upsample closes a level), so the same code handles
// SD1 (4 levels, attention on 3), SDXL (3 levels, attention on 2, deeper transformers) and tiny test models.
// SpatialTransformer internals (norm, proj_in/out, transformer_blocks.N.*) already use the diffusers names; proj_in /
// proj_out keep their shape (1x1 conv in SD1, Linear in SD2/SDXL) and the model loader checks them.
#include <array>
#include <utility>

#include "core/error.h"
#include "models/convert/original_parts.h"

namespace nuance::original_format {
namespace {

constexpr const char* kPrefix = "model.diffusion_model.";

// ResBlock sub-module names, original -> diffusers ResnetBlock2D.
constexpr std::array<std::pair<const char*, const char*>, 6> kResnetNames = {{
    {"in_layers.0.", "norm1."},
    {"in_layers.2.", "conv1."},
    {"emb_layers.1.", "time_emb_proj."},
    {"out_layers.0.", "norm2."},
    {"out_layers.3.", "conv2."},
    {"skip_connection.", "conv_shortcut."},
}};

// Top-level names, original -> diffusers.
constexpr std::array<std::pair<const char*, const char*>, 8> kTopNames = {{
    {"input_blocks.0.0.", "conv_in."},
    {"time_embed.0.", "time_embedding.linear_1."},
    {"time_embed.2.", "time_embedding.linear_2."},
    {"label_emb.0.0.", "add_embedding.linear_1."},  // SDXL 'text_time' ADM embedding
    {"label_emb.0.2.", "add_embedding.linear_2."},
    {"label_emb.weight", "class_embedding.weight"},  // class-conditional UNets (nn.Embedding)
    {"out.0.", "conv_norm_out."},
    {"out.2.", "conv_out."},
}};

enum class Kind { Resnet, Attention, Downsample, Upsample };
const char* kind_name(Kind k) {
    switch (k) {
        case Kind::Resnet: return "ResBlock";
        case Kind::Attention: return "SpatialTransformer";
        case Kind::Downsample: return "Downsample";
        case Kind::Upsample: return "Upsample";
    }
    return "?";
}

using Slot = TensorMap;                  // rest-of-key -> tensor, for one module inside a slot
using Block = std::map<int64_t, Slot>;   // S -> module   (input_blocks.K.S)
using Blocks = std::map<int64_t, Block>; // K -> block

Kind classify(const std::string& where, const Slot& slot) {
    bool res = false, attn = false, down = false, up = false;
    for (const auto& [rest, t] : slot) {
        if (rest.starts_with("in_layers.") || rest.starts_with("out_layers.") || rest.starts_with("emb_layers.") ||
            rest.starts_with("skip_connection."))
            res = true;
        else if (rest.starts_with("transformer_blocks.") || rest.starts_with("proj_in.") ||
                 rest.starts_with("proj_out.") || rest.starts_with("norm."))
            attn = true;
        else if (rest == "op.weight" || rest == "op.bias")
            down = true;
        else if (rest == "conv.weight" || rest == "conv.bias")
            up = true;
        else
            fail(ErrorCode::Unsupported, "unet: unrecognised tensor '", kPrefix, where, ".", rest, "'");
    }
    NUANCE_CHECK_CODE(res + attn + down + up == 1, Unsupported, "unet: '", kPrefix, where,
                      "' mixes tensors of different module kinds");
    return res ? Kind::Resnet : attn ? Kind::Attention : down ? Kind::Downsample : Kind::Upsample;
}

void emit_resnet(TensorMap& out, const std::string& where, const Slot& slot, const std::string& dst) {
    for (const auto& [rest, t] : slot) {
        bool done = false;
        for (const auto& [from, to] : kResnetNames) {
            if (rest.starts_with(from)) {
                put(out, dst + to + rest.substr(std::string_view(from).size()), t);
                done = true;
                break;
            }
        }
        NUANCE_CHECK_CODE(done, Unsupported, "unet: unrecognised ResBlock tensor '", kPrefix, where, ".", rest, "'");
    }
}

void emit_attention(TensorMap& out, const std::string& where, const Slot& slot, const std::string& dst) {
    std::set<int64_t> depth;
    for (const auto& [rest, t] : slot) {
        if (rest.starts_with("transformer_blocks.")) {
            auto parts = split_key(rest);
            int64_t b = parts.size() > 2 ? parse_index(parts[1]) : -1;
            NUANCE_CHECK_CODE(b >= 0, Unsupported, "unet: bad transformer block key '", kPrefix, where, ".", rest, "'");
            depth.insert(b);
        }
        put(out, dst + rest, t);  // same names inside a SpatialTransformer
    }
    check_contiguous(str("unet: ", kPrefix, where, ".transformer_blocks"), depth);
}

void emit_sampler(TensorMap& out, const Slot& slot, const std::string& dst) {
    for (const auto& [rest, t] : slot) put(out, dst + rest.substr(rest.find('.') + 1), t);  // op.X / conv.X -> X
}

// Top-level tensors (conv_in, time_embed, label_emb, out): renames `key` into `out` when it is one of them.
bool rename_top(TensorMap& out, const std::string& key, const Tensor& t, bool forward) {
    for (const auto& [a, b] : kTopNames) {
        std::string_view from = forward ? a : b, to = forward ? b : a;
        if (from.back() != '.') {
            if (key != from) continue;
            put(out, std::string(to), t);
            return true;
        }
        if (!key.starts_with(from)) continue;
        std::string rest = key.substr(from.size());
        NUANCE_CHECK_CODE(rest == "weight" || rest == "bias", Unsupported, "unet: unrecognised tensor '",
                          forward ? kPrefix : "", key, "'");
        put(out, std::string(to) + rest, t);
        return true;
    }
    return false;
}

std::set<int64_t> slot_indices(const Block& block) {
    std::set<int64_t> s;
    for (const auto& [i, m] : block) s.insert(i);
    return s;
}

// Groups "<name>.K.S.rest" keys: K -> S -> rest.
void add_slot(Blocks& b, const std::string& key, const std::vector<std::string>& parts, const Tensor& t) {
    int64_t k = parts.size() > 3 ? parse_index(parts[1]) : -1;
    int64_t s = k >= 0 ? parse_index(parts[2]) : -1;
    NUANCE_CHECK_CODE(k >= 0 && s >= 0, Unsupported, "unet: unrecognised tensor '", kPrefix, key, "'");
    b[k][s][join_key(parts, 3)] = t;
}

struct DownLevel {
    int64_t resnets = 0;
    bool attention = false;
};

}  // namespace

TensorMap unet_from_original(const TensorMap& ldm, bool encoder_only) {
    TensorMap out;
    Blocks input, middle_as_blocks, output;
    for (const auto& [key, t] : ldm) {
        if (rename_top(out, key, t, true)) continue;
        auto parts = split_key(key);
        if (parts[0] == "input_blocks") {
            add_slot(input, key, parts, t);
        } else if (parts[0] == "output_blocks") {
            add_slot(output, key, parts, t);
        } else if (parts[0] == "middle_block") {
            // middle_block.S.rest: store as block 0 with slots S.
            int64_t s = parts.size() > 2 ? parse_index(parts[1]) : -1;
            NUANCE_CHECK_CODE(s >= 0, Unsupported, "unet: unrecognised tensor '", kPrefix, key, "'");
            middle_as_blocks[0][s][join_key(parts, 2)] = t;
        } else {
            fail(ErrorCode::Unsupported, "unet: unrecognised tensor '", kPrefix, key, "'");
        }
    }
    NUANCE_CHECK_CODE(out.count("conv_in.weight"), Unsupported, "unet: '", kPrefix,
                      "input_blocks.0.0.weight' (conv_in) is missing");
    NUANCE_CHECK_CODE(!input.count(0), Unsupported, "unet: unrecognised tensors under '", kPrefix, "input_blocks.0.",
                      "' besides conv_in");

    // ---- input blocks -> down_blocks ----
    std::set<int64_t> ks{0};  // input_blocks.0 = conv_in
    for (const auto& [k, b] : input) ks.insert(k);
    check_contiguous(str("unet: ", kPrefix, "input_blocks"), ks);
    std::vector<DownLevel> levels(1);
    for (const auto& [k, block] : input) {
        std::string where = str("input_blocks.", k);
        std::vector<Kind> kinds;
        for (const auto& [s, slot] : block) kinds.push_back(classify(str(where, ".", s), slot));
        int64_t level = (int64_t)levels.size() - 1;
        std::string dst_level = str("down_blocks.", level, ".");
        if (kinds.size() == 1 && kinds[0] == Kind::Downsample && block.begin()->first == 0) {
            NUANCE_CHECK_CODE(levels.back().resnets > 0, Unsupported, "unet: '", kPrefix, where,
                              "' is a Downsample but level ", level, " has no ResBlock before it");
            emit_sampler(out, block.at(0), dst_level + "downsamplers.0.conv.");
            levels.emplace_back();
            continue;
        }
        bool ok = block.count(0) && kinds[0] == Kind::Resnet &&
                  (block.size() == 1 || (block.size() == 2 && block.count(1) && kinds[1] == Kind::Attention));
        NUANCE_CHECK_CODE(ok, Unsupported, "unet: '", kPrefix, where,
                          "' is not 'ResBlock [+ SpatialTransformer]' nor 'Downsample' (found slots ",
                          index_ranges(slot_indices(block)),
                          ", first is a ", kind_name(kinds[0]), ")");
        DownLevel& lv = levels.back();
        bool attn = block.size() == 2;
        NUANCE_CHECK_CODE(lv.resnets == 0 || lv.attention == attn, Unsupported, "unet: '", kPrefix, where,
                          "': level ", level, " mixes ResBlocks with and without attention");
        lv.attention = attn;
        emit_resnet(out, str(where, ".0"), block.at(0), str(dst_level, "resnets.", lv.resnets, "."));
        if (attn) emit_attention(out, str(where, ".1"), block.at(1), str(dst_level, "attentions.", lv.resnets, "."));
        ++lv.resnets;
    }
    NUANCE_CHECK_CODE(levels.back().resnets > 0, Unsupported, "unet: level ", levels.size() - 1,
                      " has no ResBlock (", kPrefix, "input_blocks end with a Downsample, or hold only conv_in)");
    const int64_t num_levels = (int64_t)levels.size();

    // ---- middle block -> mid_block ----
    if (!middle_as_blocks.empty()) {
        const Block& mid = middle_as_blocks.at(0);
        check_contiguous(str("unet: ", kPrefix, "middle_block"), slot_indices(mid));
        int64_t r = 0, a = 0;
        for (const auto& [s, slot] : mid) {
            std::string where = str("middle_block.", s);
            Kind kind = classify(where, slot);
            if (kind == Kind::Resnet) emit_resnet(out, where, slot, str("mid_block.resnets.", r++, "."));
            else if (kind == Kind::Attention) emit_attention(out, where, slot, str("mid_block.attentions.", a++, "."));
            else fail(ErrorCode::Unsupported, "unet: '", kPrefix, where, "' is a ", kind_name(kind), " (mid block)");
        }
    }

    if (encoder_only) {
        NUANCE_CHECK_CODE(output.empty(), Unsupported, "unet: output_blocks in an encoder-only (ControlNet) checkpoint");
        return out;
    }
    // ---- output blocks -> up_blocks: level u mirrors down level L-1-u and has resnets+1 blocks ----
    ks.clear();
    for (const auto& [k, b] : output) ks.insert(k);
    check_contiguous(str("unet: ", kPrefix, "output_blocks"), ks);
    int64_t u = 0, j = 0;
    bool up_attention = false;
    for (const auto& [k, block] : output) {
        std::string where = str("output_blocks.", k);
        NUANCE_CHECK_CODE(u < num_levels, Unsupported, "unet: '", kPrefix, where, "' is past the last of ", num_levels,
                          " up levels (the input blocks define ", num_levels, " levels)");
        const int64_t expected = levels[(size_t)(num_levels - 1 - u)].resnets + 1;
        std::vector<Kind> kinds;
        std::set<int64_t> ss;
        for (const auto& [s, slot] : block) {
            kinds.push_back(classify(str(where, ".", s), slot));
            ss.insert(s);
        }
        check_contiguous(str("unet: ", kPrefix, where), ss);
        NUANCE_CHECK_CODE(kinds[0] == Kind::Resnet, Unsupported, "unet: '", kPrefix, where, ".0' is a ",
                          kind_name(kinds[0]), ", expected a ResBlock");
        bool attn = kinds.size() >= 2 && kinds[1] == Kind::Attention;
        bool upsample = kinds.back() == Kind::Upsample;
        NUANCE_CHECK_CODE(kinds.size() == 1 + (size_t)attn + (size_t)upsample, Unsupported, "unet: '", kPrefix, where,
                          "' is not 'ResBlock [+ SpatialTransformer] [+ Upsample]'");
        NUANCE_CHECK_CODE(j == 0 || attn == up_attention, Unsupported, "unet: '", kPrefix, where, "': up level ", u,
                          " mixes ResBlocks with and without attention");
        up_attention = attn;
        std::string dst_level = str("up_blocks.", u, ".");
        emit_resnet(out, str(where, ".0"), block.at(0), str(dst_level, "resnets.", j, "."));
        if (attn) emit_attention(out, str(where, ".1"), block.at(1), str(dst_level, "attentions.", j, "."));
        ++j;
        if (upsample) {
            NUANCE_CHECK_CODE(j == expected && u + 1 < num_levels, Unsupported, "unet: '", kPrefix, where,
                              "' ends up level ", u, " after ", j, " blocks, expected ", expected,
                              " (down level ", num_levels - 1 - u, " has ", expected - 1, " ResBlocks)",
                              u + 1 < num_levels ? "" : "; the last up level has no Upsample");
            emit_sampler(out, block.at((int64_t)kinds.size() - 1), dst_level + "upsamplers.0.conv.");
            ++u;
            j = 0;
        } else {
            NUANCE_CHECK_CODE(j < expected || u + 1 == num_levels, Unsupported, "unet: '", kPrefix, where,
                              "': up level ", u, " has ", expected, " blocks but no Upsample at its end");
        }
    }
    NUANCE_CHECK_CODE(u + 1 == num_levels && j == levels[0].resnets + 1, Unsupported, "unet: ", kPrefix,
                      "output_blocks has ", output.size(), " blocks, which does not mirror the ", num_levels,
                      " input levels (expected ", [&] {
                          int64_t n = 0;
                          for (const auto& lv : levels) n += lv.resnets + 1;
                          return n;
                      }(), ")");
    return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Reverse: diffusers names -> original slots.

namespace {

struct DiffusersLevel {
    std::map<int64_t, TensorMap> resnets, attentions;
    TensorMap sampler;  // downsamplers.0.conv.X / upsamplers.0.conv.X -> "X"
};

void emit_resnet_original(TensorMap& out, const std::string& where, const TensorMap& rs, const std::string& dst) {
    for (const auto& [rest, t] : rs) {
        bool done = false;
        for (const auto& [from, to] : kResnetNames) {
            if (rest.starts_with(to)) {
                put(out, dst + from + rest.substr(std::string_view(to).size()), t);
                done = true;
                break;
            }
        }
        NUANCE_CHECK_CODE(done, Unsupported, "unet: unrecognised resnet tensor '", where, ".", rest, "'");
    }
}

void emit_prefixed(TensorMap& out, const TensorMap& m, const std::string& dst) {
    for (const auto& [rest, t] : m) put(out, dst + rest, t);
}

}  // namespace

TensorMap unet_to_original(const TensorMap& unet) {
    TensorMap out;
    std::map<int64_t, DiffusersLevel> down, up;
    DiffusersLevel mid;
    for (const auto& [key, t] : unet) {
        if (rename_top(out, key, t, false)) continue;
        auto parts = split_key(key);
        bool is_down = parts[0] == "down_blocks", is_up = parts[0] == "up_blocks", is_mid = parts[0] == "mid_block";
        NUANCE_CHECK_CODE(is_down || is_up || is_mid, Unsupported, "unet: unrecognised tensor '", key, "'");
        // mid_block.(resnets|attentions).j.rest is parsed as level 0 of a one-level map.
        std::vector<std::string> p = parts;
        if (is_mid) p.insert(p.begin() + 1, "0");
        int64_t i = p.size() > 4 ? parse_index(p[1]) : -1;
        int64_t j = i >= 0 ? parse_index(p[3]) : -1;
        NUANCE_CHECK_CODE(j >= 0, Unsupported, "unet: unrecognised tensor '", key, "'");
        DiffusersLevel& lv = is_mid ? mid : is_down ? down[i] : up[i];
        std::string rest = join_key(p, 4);
        const std::string sampler = is_down ? "downsamplers" : "upsamplers";
        if (p[2] == "resnets") {
            lv.resnets[j][rest] = t;
        } else if (p[2] == "attentions") {
            lv.attentions[j][rest] = t;
        } else if (!is_mid && p[2] == sampler && j == 0 && rest.starts_with("conv.")) {
            lv.sampler[rest.substr(5)] = t;
        } else {
            fail(ErrorCode::Unsupported, "unet: unrecognised tensor '", key, "'");
        }
    }

    auto check_level = [](const std::string& what, const DiffusersLevel& lv) {
        std::set<int64_t> r, a;
        for (const auto& [j, m] : lv.resnets) r.insert(j);
        for (const auto& [j, m] : lv.attentions) a.insert(j);
        check_contiguous(what + ".resnets", r);
        NUANCE_CHECK_CODE(a.empty() || a == r || what == "mid_block", Unsupported, "unet: ", what,
                          " has attentions ", index_ranges(a), " for resnets ", index_ranges(r));
    };
    std::set<int64_t> li;
    for (const auto& [i, lv] : down) li.insert(i);
    check_contiguous("unet: down_blocks", li);
    li.clear();
    for (const auto& [i, lv] : up) li.insert(i);
    check_contiguous("unet: up_blocks", li);
    NUANCE_CHECK_CODE(down.size() == up.size(), Unsupported, "unet: ", down.size(), " down_blocks but ", up.size(),
                      " up_blocks");

    int64_t k = 1;
    for (const auto& [i, lv] : down) {
        check_level(str("down_blocks.", i), lv);
        for (const auto& [j, rs] : lv.resnets) {
            emit_resnet_original(out, str("down_blocks.", i, ".resnets.", j), rs, str("input_blocks.", k, ".0."));
            if (lv.attentions.count(j)) emit_prefixed(out, lv.attentions.at(j), str("input_blocks.", k, ".1."));
            ++k;
        }
        if (!lv.sampler.empty()) emit_prefixed(out, lv.sampler, str("input_blocks.", k++, ".0.op."));
    }
    if (!mid.resnets.empty() || !mid.attentions.empty()) {
        check_level("mid_block", mid);
        // ResBlock, (SpatialTransformer, ResBlock)*  or  ResBlock, ResBlock (no attention).
        const bool interleaved = !mid.attentions.empty();
        NUANCE_CHECK_CODE(!interleaved || mid.attentions.size() + 1 == mid.resnets.size(), Unsupported,
                          "unet: mid_block has ", mid.resnets.size(), " resnets and ", mid.attentions.size(),
                          " attentions");
        for (const auto& [j, rs] : mid.resnets)
            emit_resnet_original(out, str("mid_block.resnets.", j), rs, str("middle_block.", interleaved ? 2 * j : j, "."));
        for (const auto& [j, at] : mid.attentions) {
            NUANCE_CHECK_CODE(mid.resnets.count(j) && mid.resnets.count(j + 1), Unsupported,
                              "unet: mid_block.attentions.", j, " is not between two resnets");
            emit_prefixed(out, at, str("middle_block.", 2 * j + 1, "."));
        }
    }
    k = 0;
    for (const auto& [u, lv] : up) {
        check_level(str("up_blocks.", u), lv);
        const int64_t n = (int64_t)lv.resnets.size();
        for (const auto& [j, rs] : lv.resnets) {
            emit_resnet_original(out, str("up_blocks.", u, ".resnets.", j), rs, str("output_blocks.", k, ".0."));
            int64_t s = 1;
            if (lv.attentions.count(j)) emit_prefixed(out, lv.attentions.at(j), str("output_blocks.", k, ".", s++, "."));
            if (j == n - 1 && !lv.sampler.empty()) emit_prefixed(out, lv.sampler, str("output_blocks.", k, ".", s, ".conv."));
            ++k;
        }
    }
    return out;
}

}  // namespace nuance::original_format
