// The settings of inpainting and outpainting (GenerateParams::inpaint; pipelines/inpaint.h does the work). Names
// and meanings follow A1111's img2img (mask_blur, inpainting_fill, inpaint_full_res, inpaint_full_res_padding,
// inpainting_mask_invert).
#pragma once
#include <string>

namespace nuance {

// What the masked area starts from (A1111 inpainting_fill, numbered as A1111 numbers it).
enum class InpaintFill {
    Fill = 0,           // the masked area's pixels replaced by blurred colours of its surroundings before encoding
    Original = 1,       // the image as it is (diffusers' behaviour)
    LatentNoise = 2,    // the masked latents replaced by seeded noise
    LatentNothing = 3,  // the masked latents set to zero
};
// "fill" | "original" | "latent-noise" | "latent-nothing" (also '_' or ' ' for '-', and "0".."3"); Error otherwise.
InpaintFill parse_inpaint_fill(const std::string& name);
const char* inpaint_fill_name(InpaintFill f);  // "fill", "original", "latent-noise", "latent-nothing"

struct InpaintOptions {
    int mask_blur = 4;               // Gaussian blur of the mask, pixels (A1111: sigma = blur, kernel 2*int(2.5b+.5)+1)
    bool invert_mask = false;        // repaint where the mask is black
    bool full_res = false;           // "only masked": crop the mask's box + padding, inpaint it at the working size
    int full_res_padding = 32;       // pixels around the mask's box (full_res)
    InpaintFill fill = InpaintFill::Original;
    // Outpainting: pixels added on each side (rounded up to multiples of the VAE factor); any > 0 turns it on.
    int outpaint_left = 0, outpaint_right = 0, outpaint_top = 0, outpaint_bottom = 0;
    bool outpainting() const { return outpaint_left > 0 || outpaint_right > 0 || outpaint_top > 0 || outpaint_bottom > 0; }
    bool prepared = false;  // internal: generate() got the working image and mask from generate_inpaint()
};

}  // namespace nuance
