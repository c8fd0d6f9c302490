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
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

struct AugmentOptions {
  bool enabled = false;
  double min_crop_area = 0.8;    // random resized crop: area fraction in [min, 1]
  double max_aspect_change = 0.1;  // crop aspect ratio in [1/(1+x), 1+x]
  double flip_probability = 0.5;   // horizontal flip
  double max_rotation_deg = 10.0;
  double brightness = 0.1;  // multiplicative factor in [1-x, 1+x]
  double contrast = 0.1;    // around the mean, factor in [1-x, 1+x]
};

// Deterministic part: resize (and CLAHE). Input and output are 8-bit, 1 or 3 channels.
cv::Mat preprocess(const cv::Mat& image, const PreprocessOptions& options);
// Random part, reproducible from `seed`. Output has the input's size.
cv::Mat augment(const cv::Mat& image, const AugmentOptions& options, uint64_t seed);
// 8-bit HxW(x1|3) -> float [3, H, W], normalised; grey is repeated to 3 channels.
torch::Tensor to_tensor(const cv::Mat& image, const std::array<float, 3>& mean, const std::array<float, 3>& std);
// The same, written to dst (3*H*W floats).
void to_chw_float(const cv::Mat& image, float* dst, const std::array<float, 3>& mean, const std::array<float, 3>& std);

}  // namespace fracture::data
