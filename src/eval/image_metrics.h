// Full-reference image quality: PSNR and SSIM of 8-bit images against a reference of the same size.
//
// SSIM is Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity", eq. 13) as
// scikit-image's structural_similarity computes it with gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
// data_range=255 (the settings of the paper): local means, variances and covariance under an 11-tap Gaussian
// (scipy.ndimage.gaussian_filter, truncate 3.5, mode 'reflect'), K1 = 0.01, K2 = 0.03, the SSIM map averaged after
// cropping the 5-pixel border, each channel on its own, then the mean over channels.
#pragma once
#include <vector>

#include "io/image.h"

namespace nuance {

// Mean squared error over every pixel and channel (the images must have the same width, height and channels).
double image_mse(const Image& a, const Image& b);
// 10 log10(255^2 / MSE); +infinity for identical images.
double psnr(const Image& a, const Image& b);
// PSNR of the pooled MSE of many image pairs (a[i] against b[i]): one number for a set, finite unless every pair is
// identical.
double psnr_pooled(const std::vector<Image>& a, const std::vector<Image>& b);
// Mean SSIM; the images must be at least 11x11.
double ssim(const Image& a, const Image& b);

}  // namespace nuance
