#include "fracture/data/transforms.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

namespace fracture::data {

namespace {

// In 8 bits, so that the loader's cache and the augmentation after it work as
// before. The target is ImageNet's grey mean and spread (0.449 and 0.226 of
// the range): the pictures the frozen stages learnt from, whatever constants
// the model's own normalisation uses (Lite's spread is 0.502, which in 8 bits
// would clip half of every image). Beyond two spreads values clip at 0 or
// 255. A flat image is only shifted.
constexpr double kTargetMean = 0.449 * 255, kTargetSpread = 0.226 * 255;

void standardise(cv::Mat roi) {
  cv::Scalar mean, spread;
  cv::meanStdDev(roi.reshape(1), mean, spread);
  const double scale = spread[0] > 1e-6 ? kTargetSpread / spread[0] : 1.0;
  cv::Mat scaled;
  roi.convertTo(scaled, -1, scale, kTargetMean - scale * mean[0]);
  scaled.copyTo(roi);
}

}  // namespace

cv::Mat preprocess(const cv::Mat& image, const PreprocessOptions& o) {
  cv::Mat out;
  cv::Rect content(0, 0, o.size, o.size);  // where the image is (inside letterbox bars)
  const int s = o.size;
  // INTER_AREA when shrinking avoids aliasing fine bone edges; linear when enlarging.
  auto interp = [&](int w, int h) { return (w < image.cols || h < image.rows) ? cv::INTER_AREA : cv::INTER_LINEAR; };
  if (o.resize == ResizeMode::Stretch) {
    cv::resize(image, out, {s, s}, 0, 0, interp(s, s));
  } else {
    const double scale = static_cast<double>(s) / std::max(image.cols, image.rows);
    const int w = std::max(1, static_cast<int>(std::lround(image.cols * scale)));
    const int h = std::max(1, static_cast<int>(std::lround(image.rows * scale)));
    cv::Mat scaled;
    cv::resize(image, scaled, {w, h}, 0, 0, interp(w, h));
    out = cv::Mat::zeros(s, s, image.type());
    content = cv::Rect((s - w) / 2, (s - h) / 2, w, h);
    scaled.copyTo(out(content));
  }
  if (o.clahe) {
    auto clahe = cv::createCLAHE(2.0, {8, 8});
    if (out.channels() == 1) {
      clahe->apply(out, out);
    } else {
      cv::Mat lab;
      cv::cvtColor(out, lab, cv::COLOR_RGB2Lab);
      std::vector<cv::Mat> ch;
      cv::split(lab, ch);
      clahe->apply(ch[0], ch[0]);
      cv::merge(ch, lab);
      cv::cvtColor(lab, out, cv::COLOR_Lab2RGB);
    }
  }
  if (o.standardise) standardise(out(content));
  return out;
}

namespace {

using Uniform = std::function<double(double, double)>;

// Random resized crop + rotation + flip as one affine warp: one resampling
// instead of three keeps fine fracture lines sharper.
cv::Mat warp_randomly(const cv::Mat& image, const AugmentOptions& o, const Uniform& uniform) {
  const double w = image.cols, h = image.rows;
  const double area = uniform(o.min_crop_area, 1.0);
  const double log_r = std::log(1.0 + o.max_aspect_change);
  const double aspect = std::exp(uniform(-log_r, log_r));
  const double cw = std::min(w, w * std::sqrt(area * aspect));
  const double ch = std::min(h, h * std::sqrt(area / aspect));
  // Pixel centres run 0..w-1, so the image centre is (w-1)/2: a full-size
  // mirror is then exactly x -> w-1-x, as cv::flip.
  const double cx = uniform(cw / 2, w - cw / 2) - 0.5, cy = uniform(ch / 2, h - ch / 2) - 0.5;
  const double angle = uniform(-o.max_rotation_deg, o.max_rotation_deg);
  const bool flip = uniform(0, 1) < o.flip_probability;

  // Source -> output: move the crop centre to the origin, rotate, scale the
  // crop up to full size (mirrored if flipping), move to the output centre.
  auto affine = [](double a, double b, double c, double d, double e, double f) -> cv::Mat {
    cv::Mat m = (cv::Mat_<double>(3, 3) << a, b, c, d, e, f, 0, 0, 1);
    return m;
  };
  const double rad = angle * CV_PI / 180.0;
  const cv::Mat to_origin = affine(1, 0, -cx, 0, 1, -cy);
  const cv::Mat rotate = affine(std::cos(rad), -std::sin(rad), 0, std::sin(rad), std::cos(rad), 0);
  const cv::Mat scale = affine((flip ? -1.0 : 1.0) * w / cw, 0, 0, 0, h / ch, 0);
  const cv::Mat to_centre = affine(1, 0, (w - 1) / 2, 0, 1, (h - 1) / 2);
  const cv::Mat full = cv::Mat(to_centre * scale * rotate * to_origin).rowRange(0, 2);
  cv::Mat out;
  cv::warpAffine(image, out, full, image.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return out;
}

// Gamma and a moved window as one 8-bit lookup table: a different exposure
// curve and a different display window, as another scanner or export would give.
void remap_intensities(cv::Mat& image, const AugmentOptions& o, const Uniform& uniform) {
  const double g = o.gamma > 0 ? std::exp(uniform(-std::log1p(o.gamma), std::log1p(o.gamma))) : 1.0;
  // Negative moves widen the window (a flatter picture), positive ones clip
  // (a harder one).
  const double black = o.window > 0 ? uniform(-o.window, o.window) : 0.0;
  const double white = o.window > 0 ? 1.0 - uniform(-o.window, o.window) : 1.0;
  cv::Mat lut(1, 256, CV_8U);
  for (int v = 0; v < 256; ++v) {
    const double windowed = std::clamp((v / 255.0 - black) / (white - black), 0.0, 1.0);
    lut.at<uint8_t>(v) = cv::saturate_cast<uint8_t>(255.0 * std::pow(windowed, g));
  }
  cv::LUT(image, lut, image);
}

void degrade_randomly(cv::Mat& image, const AugmentOptions& o, const Uniform& uniform, uint64_t seed) {
  const bool blur = o.blur > 0 && uniform(0, 1) < 0.5;
  const double blur_sigma = uniform(0.3, std::max(0.3, o.blur));
  const bool noise = o.noise > 0 && uniform(0, 1) < 0.5;
  const double noise_sigma = uniform(0, o.noise) * 255.0;
  if (blur) cv::GaussianBlur(image, image, {0, 0}, blur_sigma);
  if (noise) {
    cv::Mat n(image.size(), CV_32FC(image.channels()));
    cv::RNG(seed ^ 0x9e3779b97f4a7c15ULL).fill(n, cv::RNG::NORMAL, 0.0, noise_sigma);
    cv::Mat f;
    image.convertTo(f, CV_32F);
    f += n;
    f.convertTo(image, CV_8U);  // saturates to [0, 255]
  }
}

}  // namespace

AugmentOptions with_scanner_intensity(AugmentOptions o) {
  o.gamma = 0.5;
  o.window = 0.1;
  o.noise = 0.03;
  o.blur = 1.2;
  return o;
}

cv::Mat augment(const cv::Mat& image, const AugmentOptions& o, uint64_t seed) {
  if (!o.enabled) return image;
  std::mt19937_64 rng(seed);
  const Uniform uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  cv::Mat out = o.geometric ? warp_randomly(image, o, uniform) : image.clone();

  // Contrast around the mean, then brightness; convertTo saturates to [0, 255].
  const double c = uniform(1 - o.contrast, 1 + o.contrast);
  const double b = uniform(1 - o.brightness, 1 + o.brightness);
  const double mean = cv::mean(out)[0];
  out.convertTo(out, -1, c * b, mean * (1 - c) * b);
  if (o.gamma > 0 || o.window > 0) remap_intensities(out, o, uniform);
  if (o.noise > 0 || o.blur > 0) degrade_randomly(out, o, uniform, seed);
  return out;
}

void to_chw_float(const cv::Mat& image, float* dst, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  CV_Assert(image.depth() == CV_8U && (image.channels() == 1 || image.channels() == 3));
  // A plain loop, not torch ops: loader threads must not start OpenMP teams.
  const int h = image.rows, w = image.cols, cn = image.channels();
  const size_t plane = static_cast<size_t>(h) * w;
  for (int c = 0; c < 3; ++c) {
    const float scale = 1.0f / (255.0f * std[c]), shift = -mean[c] / std[c];
    const int src_c = cn == 1 ? 0 : c;
    float* out = dst + c * plane;
    for (int y = 0; y < h; ++y) {
      const uint8_t* row = image.ptr<uint8_t>(y);
      for (int x = 0; x < w; ++x) out[static_cast<size_t>(y) * w + x] = row[x * cn + src_c] * scale + shift;
    }
  }
}

torch::Tensor to_tensor(const cv::Mat& image, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  torch::Tensor t = torch::empty({3, image.rows, image.cols});
  to_chw_float(image, t.data_ptr<float>(), mean, std);
  return t;
}

}  // namespace fracture::data
