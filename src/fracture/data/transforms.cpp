#include "fracture/data/transforms.h"

#include <opencv2/imgproc.hpp>

#include <random>

namespace fracture::data {

cv::Mat preprocess(const cv::Mat& image, const PreprocessOptions& o) {
  cv::Mat out;
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
    scaled.copyTo(out(cv::Rect((s - w) / 2, (s - h) / 2, w, h)));
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
  return out;
}

cv::Mat augment(const cv::Mat& image, const AugmentOptions& o, uint64_t seed) {
  if (!o.enabled) return image;
  std::mt19937_64 rng(seed);
  auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  const double w = image.cols, h = image.rows;

  // Random resized crop + rotation + flip as one affine warp: one resampling
  // instead of three keeps fine fracture lines sharper.
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

  // Contrast around the mean, then brightness; convertTo saturates to [0, 255].
  const double c = uniform(1 - o.contrast, 1 + o.contrast);
  const double b = uniform(1 - o.brightness, 1 + o.brightness);
  const double mean = cv::mean(out)[0];
  out.convertTo(out, -1, c * b, mean * (1 - c) * b);
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
