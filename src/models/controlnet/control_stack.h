// Several ControlNets applied at once (diffusers MultiControlNetModel / A1111's sd-webui-controlnet units): each
// unit has its conditioning image, weight, active step range and control mode; their residuals are summed and added
// to the UNet's skips (models/unet/unet2d.h UNetExtra). The pipeline builds the stack (pipelines/generate.cpp) and
// passes it to the family in StepContext::control; the SD families consume it (models/sd/sd_model.cpp).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/image.h"
#include "models/controlnet/controlnet.h"

namespace nuance {

enum class ControlMode {
    Balanced,              // diffusers default / A1111 "Balanced": residuals x weight on every row
    PromptMoreImportant,   // A1111 "My prompt is more important": residual k of n scaled by 0.825^(n - k) x weight
    ControlMoreImportant,  // A1111 "ControlNet is more important": the same soft scales, and the cond row only
    Guess,                 // diffusers guess_mode: scales logspace(-1, 0, n + 1) x weight, the cond row only
};
const char* control_mode_name(ControlMode m);  // "balanced", "prompt", "control", "guess"
// The A1111 label ("Balanced", "My prompt is more important", "ControlNet is more important"; "Guess mode").
const char* control_mode_label(ControlMode m);
// "balanced" / "prompt" / "control" / "guess" and the A1111 labels ("Balanced", "My prompt is more important",
// "ControlNet is more important") or their indices 0/1/2. Error naming `what` and the value otherwise.
ControlMode parse_control_mode(const std::string& s, const std::string& what);

// How the control image meets the output size (A1111 resize_mode).
enum class ControlResize {
    Just,  // "Just Resize": stretched to width x height (diffusers)
    Crop,  // "Crop and Resize": scaled to cover, centre crop (the extension's default)
    Fill,  // "Resize and Fill": scaled to fit, centred on black
};
// "Just Resize" / "Crop and Resize" / "Resize and Fill", 0/1/2, or just/crop/fill. Error naming `what` otherwise.
ControlResize parse_control_resize(const std::string& s, const std::string& what);

struct ControlUnit {
    std::shared_ptr<const ControlNetModel> net;
    std::string name;    // file stem, for infotext and messages
    std::string module;  // the preprocessor that made `image` ("canny", "none" ...), for infotext
    Image image;       // the conditioning image (already preprocessed), resized to the output size by the pipeline
    float weight = 1.0f;
    float start = 0.0f, end = 1.0f;  // fractions of the steps (A1111 guidance_start/end, diffusers control_guidance_*)
    ControlMode mode = ControlMode::Balanced;
    ControlResize resize = ControlResize::Just;
    std::string path;  // where `net` comes from when a caller loads it later (the server's --controlnet-dir)
};

// The image at width x height as `mode` says (Lanczos resampling).
Image fit_control_image(const Image& img, int width, int height, ControlResize mode);

// Checks weight/start/end ranges and that the unit has a net and an image; Error naming `what` ("--control-net 2").
void validate_control_unit(const ControlUnit& u, const std::string& what);

// diffusers' keep rule: unit active at step i of n unless i/n < start or (i+1)/n > end.
bool control_active(const ControlUnit& u, int step, int steps);

// The prepared stack: each unit's image as a hint tensor [1, 3, H, W] in [0, 1].
struct ControlStack {
    std::vector<ControlUnit> units;
    std::vector<Tensor> hints;

    // Builds the hints at the output size (Lanczos resize when the image's size differs).
    static ControlStack prepare(const std::vector<ControlUnit>& units, int width, int height);

    // Summed residuals of the units active at `step` of `steps` for a batch x [B, C, h, w]. `cfg_rows`: the rows
    // are [uncond, cond] (CFG); cond-only modes then give the uncond row zeros. Returns empty residuals when no unit
    // is active. `extra` carries SDXL's text_embeds / time_ids for the whole batch.
    ControlResiduals residuals(const Tensor& x, const Tensor& t, const Tensor& context, const UNetExtra& extra,
                               int step, int steps, bool cfg_rows) const;
};

}  // namespace nuance
