#pragma once
// Shared test helpers: temporary folders and generated images.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <filesystem>
#include <random>
#include <string>

namespace fracture::testing {

// A fresh folder under the system temp dir, removed when the object dies.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("fracture_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  operator const std::filesystem::path&() const { return path; }  // for fixtures that take a folder
};

// A synthetic "radiograph": dark background, a bright bone-like bar, noise;
// `seed` varies its geometry so that images differ visibly.
inline cv::Mat synthetic_xray(int w, int h, unsigned seed, bool fracture = false) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  cv::Mat img(h, w, CV_8UC1, cv::Scalar(20 + 30 * u(rng)));
  const cv::Point a(static_cast<int>(w * (0.2 + 0.2 * u(rng))), static_cast<int>(h * 0.1));
  const cv::Point b(static_cast<int>(w * (0.5 + 0.3 * u(rng))), static_cast<int>(h * 0.9));
  cv::line(img, a, b, cv::Scalar(200), std::max(3, w / 12));
  for (int k = 0; k < 3; ++k)
    cv::circle(img, {static_cast<int>(w * u(rng)), static_cast<int>(h * u(rng))},
               std::max(2, static_cast<int>(w * (0.05 + 0.1 * u(rng)))), cv::Scalar(60 + 150 * u(rng)), -1);
  if (fracture) {
    const cv::Point m = (a + b) / 2;
    cv::line(img, m - cv::Point(w / 8, 0), m + cv::Point(w / 8, h / 40), cv::Scalar(10), std::max(1, w / 60));
  }
  cv::Mat noise(h, w, CV_8UC1);
  cv::randn(noise, 0, 6);
  cv::add(img, noise, img);
  return img;
}

inline void write_image(const std::string& path, const cv::Mat& img, std::vector<int> params = {}) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  if (!cv::imwrite(path, img, params)) throw std::runtime_error("cannot write test image " + path);
}

}  // namespace fracture::testing
