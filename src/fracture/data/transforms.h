#pragma once
// Image -> network input. Deterministic preprocessing (resize, optional CLAHE)
// is separated from seeded random augmentation so that the loader can cache
// the former and redo only the latter each epoch.
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <array>
#include <cstdint>

namespace fracture::data {

enum class ResizeMode {
  Stretch,    // to size x size ignoring aspect ratio (what the paper did)
  Letterbox,  // longer side to size, centred, black bars
};

struct PreprocessOptions {
  int size = 224;
  ResizeMode resize = ResizeMode::Stretch;
  bool clahe = false;  // contrast-limited adaptive histogram equalisation
  // Per-image standardisation: each image's grey levels shifted and scaled to
  // one mean and spread (ImageNet's), so that exposure and contrast arrive at
  // the network alike whatever the scanner.
  bool standardise = false;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

struct AugmentOptions {
  bool enabled = false;
  // Crop, aspect, rotation and flip move the anatomy, and with it any boxes;
  // intensity-only augmentation (geometric = false) leaves every pixel in place.
  bool geometric = true;
  double min_crop_area = 0.8;    // random resized crop: area fraction in [min, 1]
  double max_aspect_change = 0.1;  // crop aspect ratio in [1/(1+x), 1+x]
  double flip_probability = 0.5;   // horizontal flip
  double max_rotation_deg = 10.0;
  double brightness = 0.1;  // multiplicative factor in [1-x, 1+x]
  double contrast = 0.1;    // around the mean, factor in [1-x, 1+x]
  // What differs between scanners and hospitals rather than between patients
  // (0: off). Each keeps the anatomy where it is.
  double gamma = 0;   // gamma drawn log-uniformly in [1/(1+x), 1+x]
  double window = 0;  // black and white points moved in or out by up to x of the range
  double noise = 0;   // half the images: Gaussian noise, sigma up to x of the range
  double blur = 0;    // half the images: Gaussian blur, sigma up to x pixels
};

// The scanner-like intensity changes --augment-kind intensity|both turns on:
// gamma 1/1.5-1.5, windows up to 10% in or out, noise up to 3%, blur up to 1.2 px.
AugmentOptions with_scanner_intensity(AugmentOptions options);

// Deterministic part: resize (then CLAHE, then per-image standardisation of
// the image's content, the letterbox bars left black). Input and output are
// 8-bit, 1 or 3 channels.
cv::Mat preprocess(const cv::Mat& image, const PreprocessOptions& options);
// Random part, reproducible from `seed`. Output has the input's size. The
// geometric and contrast draws come first, so turning the intensity changes on
// leaves them as they were.
cv::Mat augment(const cv::Mat& image, const AugmentOptions& options, uint64_t seed);
// 8-bit HxW(x1|3) -> float [3, H, W], normalised; grey is repeated to 3 channels.
torch::Tensor to_tensor(const cv::Mat& image, const std::array<float, 3>& mean, const std::array<float, 3>& std);
// The same, written to dst (3*H*W floats).
void to_chw_float(const cv::Mat& image, float* dst, const std::array<float, 3>& mean, const std::array<float, 3>& std);

}  // namespace fracture::data
