// transformers' CLIPImageProcessor: the image preprocessing every CLIP image tower expects.
//   RGB uint8 -> resize (PIL bicubic on uint8) so the shortest side is `shortest_edge` and the long side is
//   int(shortest_edge * long / short) -> center crop crop_h x crop_w (top = (h - crop_h) // 2, left likewise; zero
//   padding when the image is smaller) -> float32(float64(u8) * rescale_factor) -> (x - mean) / std in float32, CHW.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/tensor.h"
#include "io/image.h"

namespace nuance {

struct ClipImageProcessor {
    int shortest_edge = 224;
    int crop_height = 224, crop_width = 224;
    double rescale_factor = 1.0 / 255.0;
    float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};  // OPENAI_CLIP_MEAN
    float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};  // OPENAI_CLIP_STD
    bool do_resize = true, do_center_crop = true, do_rescale = true, do_normalize = true;

    // From a preprocessor_config.json object (size.shortest_edge or an int size, crop_size {height, width} or an
    // int, image_mean, image_std, rescale_factor, do_*). Only resample 3 (bicubic) is supported. Errors name the
    // field and the value.
    static ClipImageProcessor from_json(const nlohmann::json& j);
    // The processor for a model whose image side is `image_size` (shortest edge = crop = image_size).
    static ClipImageProcessor for_image_size(int image_size);

    // The uint8 image after the resize step (a copy when do_resize is off).
    Image resize(const Image& image) const;
    // [B, 3, crop_h, crop_w] pixel_values for the images (RGB; RGBA's alpha is dropped, gray replicated).
    Tensor operator()(const std::vector<Image>& images) const;
};

}  // namespace nuance
