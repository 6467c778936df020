// VAE: CompVis ldm AutoencoderKL keys <-> diffusers AutoencoderKL keys.
//
//   encoder.down.i.block.j.*         -> encoder.down_blocks.i.resnets.j.*   (nin_shortcut -> conv_shortcut)
//   encoder.down.i.downsample.conv.* -> encoder.down_blocks.i.downsamplers.0.conv.*
//   decoder.up.i.block.j.*           -> decoder.up_blocks.(L-1-i).resnets.j.*   (the original numbers the decoder
//   decoder.up.i.upsample.conv.*     -> decoder.up_blocks.(L-1-i).upsamplers.0.conv.*  levels from the bottom up)
//   {en,de}coder.mid.block_1/attn_1/block_2 -> mid_block.resnets.0 / attentions.0 / resnets.1
//   attn_1.norm/q/k/v/proj_out       -> group_norm/to_q/to_k/to_v/to_out.0, 1x1 conv weights [C, C, 1, 1] -> [C, C]
//   norm_out -> conv_norm_out; conv_in, conv_out, quant_conv, post_quant_conv keep their names.
// `loss.*` (discriminator / LPIPS of training checkpoints) is dropped.
#include <array>
#include <utility>

#include "backends/backend.h"
#include "core/error.h"
#include "models/convert/original_parts.h"

namespace nuance::original_format {
namespace {

constexpr const char* kPrefix = "first_stage_model.";

constexpr std::array<std::pair<const char*, const char*>, 5> kAttnNames = {{
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."},
}};
constexpr std::array<std::pair<const char*, const char*>, 5> kResnetNames = {{
    {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
    {"nin_shortcut.", "conv_shortcut."},
}};

// Renames the first matching prefix of `rest` by `table` (from -> to when forward, else to -> from); "" if none.
template <size_t N>
std::string rename(const std::array<std::pair<const char*, const char*>, N>& table, const std::string& rest,
                   bool forward) {
    for (const auto& [a, b] : table) {
        std::string_view from = forward ? a : b, to = forward ? b : a;
        if (rest.starts_with(from)) return std::string(to) + rest.substr(from.size());
    }
    return "";
}

// [C, C, 1, 1] 1x1 conv -> [C, C] linear (a view); already-linear weights pass.
Tensor conv1x1_to_linear(const std::string& key, const Tensor& t) {
    if (t.dim() == 2) return t;
    NUANCE_CHECK(t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1, "vae: tensor '", kPrefix, key,
                 "': expected a [C, C, 1, 1] or [C, C] weight, got ", shape_str(t.shape()));
    return dequantize_weight(t).reshape({t.size(0), t.size(1)});  // an FP8 file's weight: its values
}

}  // namespace

TensorMap vae_from_original(const TensorMap& ldm) {
    TensorMap out;
    std::set<int64_t> down_levels, up_levels;
    // Decoder levels are renumbered L-1-i, so L must be known first.
    for (const auto& [key, t] : ldm) {
        auto parts = split_key(key);
        if (parts.size() > 3 && parts[0] == "decoder" && parts[1] == "up") {
            int64_t i = parse_index(parts[2]);
            NUANCE_CHECK_CODE(i >= 0, Unsupported, "vae: unrecognised tensor '", kPrefix, key, "'");
            up_levels.insert(i);
        }
        if (parts.size() > 3 && parts[0] == "encoder" && parts[1] == "down") {
            int64_t i = parse_index(parts[2]);
            NUANCE_CHECK_CODE(i >= 0, Unsupported, "vae: unrecognised tensor '", kPrefix, key, "'");
            down_levels.insert(i);
        }
    }
    check_contiguous(str("vae: ", kPrefix, "encoder.down"), down_levels);
    check_contiguous(str("vae: ", kPrefix, "decoder.up"), up_levels);
    const int64_t num_up = (int64_t)up_levels.size();
    std::map<std::string, std::set<int64_t>> resnets;  // per level: block indices, for gap checks

    for (const auto& [key, t] : ldm) {
        auto parts = split_key(key);
        const std::string& side = parts[0];
        if (side == "loss") continue;
        if (side == "quant_conv" || side == "post_quant_conv") {
            put(out, key, t);
            continue;
        }
        NUANCE_CHECK_CODE((side == "encoder" || side == "decoder") && parts.size() >= 3, Unsupported,
                          "vae: unrecognised tensor '", kPrefix, key, "'");
        const std::string& mod = parts[1];
        std::string rest2 = join_key(parts, 2);
        std::string dst;
        if (mod == "conv_in" || mod == "conv_out") {
            dst = key;
        } else if (mod == "norm_out") {
            dst = side + ".conv_norm_out." + rest2;
        } else if (mod == "mid" && parts.size() >= 4) {
            std::string rest = join_key(parts, 3);
            if (parts[2] == "block_1" || parts[2] == "block_2") {
                std::string r = rename(kResnetNames, rest, true);
                if (!r.empty()) dst = str(side, ".mid_block.resnets.", parts[2] == "block_1" ? 0 : 1, ".", r);
            } else if (parts[2] == "attn_1") {
                std::string r = rename(kAttnNames, rest, true);
                if (!r.empty()) {
                    dst = side + ".mid_block.attentions.0." + r;
                    if (r.ends_with(".weight") && !r.starts_with("group_norm.")) {
                        put(out, dst, conv1x1_to_linear(key, t));
                        continue;
                    }
                }
            }
        } else if ((mod == "down" || mod == "up") && parts.size() >= 5 && (mod == "down") == (side == "encoder")) {
            int64_t i = parse_index(parts[2]);  // checked in the first pass
            int64_t level = mod == "down" ? i : num_up - 1 - i;
            std::string blocks = str(side, ".", mod == "down" ? "down_blocks." : "up_blocks.", level, ".");
            std::string rest = join_key(parts, 4);
            if (parts[3] == "block" && parts.size() >= 6) {
                int64_t j = parse_index(parts[4]);
                std::string r = rename(kResnetNames, join_key(parts, 5), true);
                if (j >= 0 && !r.empty()) {
                    dst = str(blocks, "resnets.", j, ".", r);
                    resnets[str(kPrefix, side, ".", mod, ".", i, ".block")].insert(j);
                }
            } else if ((parts[3] == "downsample" || parts[3] == "upsample") && (parts[3] == "downsample") == (mod == "down") &&
                       rest.starts_with("conv.")) {
                dst = blocks + (mod == "down" ? "downsamplers.0." : "upsamplers.0.") + rest;
            }
        }
        NUANCE_CHECK_CODE(!dst.empty(), Unsupported, "vae: unrecognised tensor '", kPrefix, key, "'");
        put(out, dst, t);
    }
    for (const auto& [what, js] : resnets) check_contiguous(str("vae: ", what), js);
    return out;
}

TensorMap vae_to_original(const TensorMap& vae) {
    TensorMap out;
    std::set<int64_t> up_levels;
    for (const auto& [key, t] : vae) {
        auto parts = split_key(key);
        if (parts.size() > 3 && parts[0] == "decoder" && parts[1] == "up_blocks") {
            int64_t i = parse_index(parts[2]);
            NUANCE_CHECK_CODE(i >= 0, Unsupported, "vae: unrecognised tensor '", key, "'");
            up_levels.insert(i);
        }
    }
    check_contiguous("vae: decoder.up_blocks", up_levels);
    const int64_t num_up = (int64_t)up_levels.size();

    for (const auto& [key, t] : vae) {
        auto parts = split_key(key);
        const std::string& side = parts[0];
        if (side == "quant_conv" || side == "post_quant_conv") {
            put(out, key, t);
            continue;
        }
        NUANCE_CHECK_CODE((side == "encoder" || side == "decoder") && parts.size() >= 3, Unsupported,
                          "vae: unrecognised tensor '", key, "'");
        const std::string& mod = parts[1];
        std::string dst;
        if (mod == "conv_in" || mod == "conv_out") {
            dst = key;
        } else if (mod == "conv_norm_out") {
            dst = side + ".norm_out." + join_key(parts, 2);
        } else if (mod == "mid_block" && parts.size() >= 5) {
            int64_t j = parse_index(parts[3]);
            std::string rest = join_key(parts, 4);
            if (parts[2] == "resnets" && (j == 0 || j == 1)) {
                std::string r = rename(kResnetNames, rest, false);
                if (!r.empty()) dst = str(side, ".mid.block_", j + 1, ".", r);
            } else if (parts[2] == "attentions" && j == 0) {
                std::string r = rename(kAttnNames, rest, false);
                if (!r.empty()) {
                    dst = side + ".mid.attn_1." + r;
                    if (r.ends_with(".weight") && !r.starts_with("norm.") && t.dim() == 2) {
                        put(out, dst, t.reshape({t.size(0), t.size(1), 1, 1}));
                        continue;
                    }
                }
            }
        } else if ((mod == "down_blocks" || mod == "up_blocks") && parts.size() >= 6 &&
                   (mod == "down_blocks") == (side == "encoder")) {
            int64_t i = parse_index(parts[2]);
            int64_t j = parse_index(parts[4]);
            const bool down = mod == "down_blocks";
            std::string level = str(side, down ? ".down." : ".up.", down ? i : num_up - 1 - i, ".");
            std::string rest = join_key(parts, 5);
            if (i >= 0 && parts[3] == "resnets" && j >= 0) {
                std::string r = rename(kResnetNames, rest, false);
                if (!r.empty()) dst = str(level, "block.", j, ".", r);
            } else if (i >= 0 && parts[3] == (down ? "downsamplers" : "upsamplers") && j == 0 &&
                       rest.starts_with("conv.")) {
                dst = level + (down ? "downsample." : "upsample.") + rest;
            }
        }
        NUANCE_CHECK_CODE(!dst.empty(), Unsupported, "vae: unrecognised tensor '", key, "'");
        put(out, dst, t);
    }
    return out;
}

}  // namespace nuance::original_format
