#include "models/sd/sd_split_files.h"

#include "io/weights.h"
#include "models/clip/clip_text.h"
#include "models/convert/original_format.h"
#include "models/convert/original_parts.h"

namespace nuance {

namespace {

using TensorMap = std::map<std::string, Tensor>;

// transformers (text_model.*) or OpenCLIP (transformer.resblocks.*) CLIP tensors under `prefix` -> transformers
// names; empty when there are none.
TensorMap clip_text_tensors(const TensorMap& all, const std::string& prefix) {
    const TensorMap t = prefix.empty() ? all : strip_prefix(all, prefix);
    if (t.count("text_model.embeddings.token_embedding.weight") || t.count("embeddings.token_embedding.weight"))
        return original_format::clip_from_hf(t);
    if (t.count("token_embedding.weight") && t.count("transformer.resblocks.0.ln_1.weight"))
        return original_format::clip_from_open_clip(t);
    return {};
}

}  // namespace

std::optional<BareUNetLayout> bare_unet_layout(const TensorIndex& ix) {
    if (ix.folder) return std::nullopt;
    if (ix.has_prefix("input_blocks.") && ix.has_prefix("output_blocks.") && ix.has("out.2.weight") &&
        ix.has_prefix("time_embed."))
        return BareUNetLayout::Original;
    if (ix.has("conv_in.weight") && ix.has_prefix("down_blocks.") && ix.has_prefix("up_blocks.") &&
        ix.has("conv_out.weight") && ix.has_prefix("time_embedding."))
        return BareUNetLayout::Diffusers;
    return std::nullopt;
}

SDFamily bare_unet_family(const TensorIndex& ix, bool* known) {
    if (known) *known = true;
    if (ix.has_prefix("label_emb.") || ix.has_prefix("add_embedding.")) return SDFamily::SDXL;
    if (const auto* k = ix.find_first("", ".attn2.to_k.weight"); k && k->second.shape.size() == 2) {
        if (k->second.shape[1] == 768) return SDFamily::SD1;
        if (k->second.shape[1] == 1024) return SDFamily::SD2;
    }
    if (known) *known = false;
    return SDFamily::SD1;
}

TensorMap bare_unet_tensors(const TensorMap& t, BareUNetLayout layout) {
    return layout == BareUNetLayout::Original ? original_format::unet_from_original(t) : t;
}

const char* split_clip_flag(SplitClip which) {
    return which == SplitClip::G ? "--clip-g" : which == SplitClip::H ? "--clip-h" : "--clip-l";
}

TensorMap clip_tensors_from_file(const std::string& path, SplitClip which) {
    const WeightFile wf = load_weights(path);
    const char* flag = split_clip_flag(which);
    const std::vector<std::string> prefixes =
        which == SplitClip::G   ? std::vector<std::string>{"", "conditioner.embedders.1.model.",
                                                           "text_encoders.clip_g.transformer."}
        : which == SplitClip::H ? std::vector<std::string>{"", "cond_stage_model.model."}
                                : std::vector<std::string>{"", "cond_stage_model.transformer.",
                                                           "conditioner.embedders.0.transformer.",
                                                           "text_encoders.clip_l.transformer."};
    for (const std::string& p : prefixes)
        if (TensorMap t = clip_text_tensors(wf.tensors, p); !t.empty()) return t;
    std::string looked;
    for (const std::string& p : prefixes) looked += str(looked.empty() ? "" : ", ", p.empty() ? "(none)" : p);
    fail(ErrorCode::InvalidArgument, flag, " '", path, "': no CLIP text encoder found (expected text_model.* as ",
         "transformers saves it or transformer.resblocks.* as OpenCLIP does, under the prefix ", looked, ")");
}

}  // namespace nuance
