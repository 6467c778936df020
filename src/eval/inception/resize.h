// How images reach the Inception network's 299x299 input, named as the FID libraries name the modes:
//   clean             clean-fid's default ("clean"): per channel, PIL Image.resize(BICUBIC) of the float32 image in
//                     [0, 255] (antialiased: the filter widens with the downscale factor), clipped to [0, 255];
//                     the network sees (x - 128) / 128 (clean-fid's InceptionV3W normalisation).
//   legacy_pytorch    pytorch-fid: F.interpolate(u8 / 255, (299, 299), bilinear, align_corners=False), no
//                     antialiasing; the network sees 2x - 1.
//   legacy_tensorflow the TF 2015-12-05 FID graph's own ResizeBilinear (TF1: align_corners=False,
//                     half_pixel_centers=False) of the [0, 255] image, then (x - 128) / 128. No golden case covers
//                     it (TensorFlow is not installed here); tests check it against hand-computed values.
// The default is clean-fid's "clean".
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"

namespace nuance {

enum class InceptionResize { Clean, LegacyPytorch, LegacyTensorflow };

constexpr int kInceptionSize = 299;

// "clean" | "legacy_pytorch" | "legacy_tensorflow"; anything else is an Error naming `what` and the value.
InceptionResize parse_inception_resize(const std::string& s, const std::string& what = "--resize");
const char* inception_resize_name(InceptionResize m);

// The resized image [3, 299, 299] F32 in the mode's own range: [0, 1] for legacy_pytorch, [0, 255] otherwise.
// `image`: 3 channels (RGB); any size from 1x1 to kMaxDecodePixels.
Tensor inception_resize(const Image& image, InceptionResize mode);
// The resized range -> the network's [-1, 1] (2x - 1 or (x - 128) / 128), in place.
void inception_normalize_(Tensor& resized, InceptionResize mode);
// Images -> the network's input batch [N, 3, 299, 299] (resized, normalised).
Tensor inception_input(const std::vector<Image>& images, InceptionResize mode);

// The pieces, for tests: one channel plane (row-major h x w floats) resized to oh x ow.
std::vector<float> resize_plane_pil_bicubic(const std::vector<float>& in, int w, int h, int ow, int oh);
std::vector<float> resize_plane_torch_bilinear(const std::vector<float>& in, int w, int h, int ow, int oh);
std::vector<float> resize_plane_tf1_bilinear(const std::vector<float>& in, int w, int h, int ow, int oh);

}  // namespace nuance
