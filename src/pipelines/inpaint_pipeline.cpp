// The pixel side of inpainting and outpainting (pipelines/inpaint.h): the working image and mask, generate() on
// them, and the composite with the original.
#include <algorithm>

#include "core/checked.h"
#include "ops/ops.h"
#include "pipelines/inpaint.h"
#include "pipelines/inpaint_image.h"

namespace nuance {

namespace {

constexpr int kOutpaintOverlap = 8;    // pixels of the original the outpaint mask covers (then blurred)
constexpr float kOutpaintNoise = 24;   // std of the noise on the stretched edge pixels (0..255 units)

Image solid(int w, int h, int channels, uint8_t v) {
    Image o;
    o.width = w;
    o.height = h;
    o.channels = channels;
    o.pixels.assign((size_t)w * (size_t)h * (size_t)channels, v);
    return o;
}

// A1111's infotext keys for the mask settings, before ", Version:".
std::string with_mask_fields(const std::string& info, const GenerateParams& p, bool user_mask) {
    const InpaintOptions& o = p.inpaint;
    std::string f;
    if (user_mask || o.outpainting()) {
        f += str(", Mask blur: ", o.mask_blur);
        if (o.invert_mask) f += ", Mask mode: Inpaint not masked";
        if (o.fill != InpaintFill::Original) {
            std::string name = inpaint_fill_name(o.fill);
            std::replace(name.begin(), name.end(), '-', ' ');
            f += ", Masked content: " + name;
        }
        if (o.full_res && !o.outpainting())
            f += str(", Inpaint area: Only masked, Masked area padding: ", o.full_res_padding);
        if (o.outpainting())
            f += str(", Outpaint: ", o.outpaint_left, " ", o.outpaint_right, " ", o.outpaint_top, " ",
                     o.outpaint_bottom);
    }
    const size_t at = info.rfind(", Version: ");
    return at == std::string::npos ? info + f : info.substr(0, at) + f + info.substr(at);
}

}  // namespace

void validate_inpaint(const DiffusionModel& m, const GenerateParams& p) {
    const InpaintOptions& o = p.inpaint;
    NUANCE_CHECK(o.mask_blur >= 0 && o.mask_blur <= kMaxMaskBlur, "mask blur must be in 0..", kMaxMaskBlur,
                 " pixels, got ", o.mask_blur);
    NUANCE_CHECK(o.full_res_padding >= 0 && o.full_res_padding <= 8192, "inpaint padding must be in 0..8192 pixels, ",
                 "got ", o.full_res_padding);
    const int amounts[4] = {o.outpaint_left, o.outpaint_right, o.outpaint_top, o.outpaint_bottom};
    const char* sides[4] = {"left", "right", "top", "bottom"};
    for (int i = 0; i < 4; ++i)
        NUANCE_CHECK(amounts[i] >= 0 && amounts[i] <= 8192, "outpaint ", sides[i], " must be in 0..8192 pixels, got ",
                     amounts[i]);
    if (o.outpainting()) {
        const int f = (int)m.vae_scale();
        const int64_t W = (int64_t)p.width + round_up_to(o.outpaint_left, f) + round_up_to(o.outpaint_right, f);
        const int64_t H = (int64_t)p.height + round_up_to(o.outpaint_top, f) + round_up_to(o.outpaint_bottom, f);
        NUANCE_CHECK(W <= 8192 && H <= 8192, "outpainting ", p.width, "x", p.height, " by ", o.outpaint_left, ",",
                     o.outpaint_right, ",", o.outpaint_top, ",", o.outpaint_bottom, " gives ", W, "x", H,
                     ", larger than 8192x8192");
        NUANCE_CHECK(p.init_image.has_value(), "outpainting needs an init image");
    }
    NUANCE_CHECK(!p.mask || p.init_image, "a mask needs an init image (img2img) to repaint");
    if (p.mask)
        NUANCE_CHECK(p.mask->width > 0 && p.mask->height > 0, "the mask image is empty (", p.mask->width, "x",
                     p.mask->height, ")");
}

std::vector<GeneratedImage> generate_inpaint(const DiffusionModel& m, const GenerateParams& p) {
    validate_params(m, p);  // sizes first: nothing below allocates for a hostile width/height
    validate_inpaint(m, p);
    const InpaintOptions& o = p.inpaint;
    GenerateParams q = p;
    q.inpaint.prepared = true;
    const bool user_mask = p.mask.has_value();
    const int f = (int)m.vae_scale();

    // The original: the init image, or (txt2img with an inpainting network) mid-grey at strength 1.
    Image base = p.init_image ? to_rgb(*p.init_image) : solid(p.width, p.height, 3, 128);
    if (!p.init_image) q.strength = 1.0f;
    Image mask = user_mask ? resize_mask(mask_from_image(*p.mask, MaskConvention::White, "mask"), base.width,
                                         base.height)
                           : solid(base.width, base.height, 1, o.outpainting() ? 0 : 255);
    if (o.invert_mask && user_mask) mask = invert_mask(mask);
    const bool full_res = o.full_res && !o.outpainting();
    if (!full_res) {  // whole picture: image and mask at the output size
        if (base.width != p.width || base.height != p.height) base = resize_image(base, p.width, p.height);
        mask = resize_mask(mask, p.width, p.height);
    }
    if (o.outpainting()) {
        const int l = round_up_to(o.outpaint_left, f), r = round_up_to(o.outpaint_right, f);
        const int t = round_up_to(o.outpaint_top, f), b = round_up_to(o.outpaint_bottom, f);
        const Image canvas = outpaint_canvas(base, l, r, t, b, kOutpaintNoise, (uint64_t)p.seed);
        Image om = outpaint_mask(canvas.width, canvas.height, l, r, t, b, kOutpaintOverlap);
        for (int y = 0; y < mask.height; ++y)  // a mask given too: repaint it as well
            for (int x = 0; x < mask.width; ++x) {
                uint8_t& v = om.pixels[(size_t)(y + t) * om.width + (x + l)];
                v = std::max(v, mask.pixels[(size_t)y * mask.width + x]);
            }
        base = canvas;
        mask = om;
        q.width = canvas.width;
        q.height = canvas.height;
    }
    mask = blur_mask(mask, o.mask_blur);

    if (mask_max(mask) == 0) {
        // A1111 runs the whole sampling and then pastes the original over everything; nothing is repainted.
        if (p.on_warning) p.on_warning("the mask has no white pixel: nothing to repaint; returning the image");
        validate_params(m, q);
        std::vector<GeneratedImage> out;
        for (int b = 0; b < p.batch_count; ++b) {
            GeneratedImage gi;
            gi.seed = p.seed + b;
            gi.image = base;
            gi.decoded = image_to_tensor(base);
            gi.infotext = with_mask_fields(a1111_infotext(m, q, gi.seed, m.file_hash()), p, user_mask);
            if (p.on_image) p.on_image(gi);
            out.push_back(std::move(gi));
        }
        return out;
    }

    Image work = base, work_mask = mask, overlay;
    PixelBox box;
    if (full_res) {  // "only masked": the mask's box + padding, grown to the output's aspect ratio
        inpaint_crop_region(mask, o.full_res_padding, p.width, p.height, &box);
        work = resize_image(crop_image(base, box), p.width, p.height);
        work_mask = resize_mask(crop_image(mask, box), p.width, p.height);
        overlay = mask;
    } else {
        overlay = mask;  // A1111 mask_for_overlay: clip(2 * mask, 0, 255)
        for (uint8_t& v : overlay.pixels) v = (uint8_t)std::min(255, 2 * (int)v);
    }
    const Image original_work = work;
    if (o.fill == InpaintFill::Fill && user_mask) work = fill_masked_area(work, work_mask);
    q.init_image = work;
    q.mask = work_mask;

    auto finish = [&](const GeneratedImage& gi) {
        GeneratedImage c = gi;
        c.image = full_res ? composite_masked(paste_resized(base, gi.image, box), base, overlay)
                           : composite_masked(gi.image, original_work, overlay);
        c.infotext = with_mask_fields(gi.infotext, p, user_mask);
        return c;
    };
    std::vector<GeneratedImage> done;
    q.on_image = [&](const GeneratedImage& gi) {
        done.push_back(finish(gi));
        if (p.on_image) p.on_image(done.back());
    };
    generate(m, q);
    return done;
}

}  // namespace nuance
