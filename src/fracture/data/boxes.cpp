#include "fracture/data/boxes.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "fracture/util/atomic_file.h"

namespace fs = std::filesystem;

namespace fracture::data {
namespace {
// A label file holds a line per box: a few hundred bytes.
constexpr uint64_t kMaxLabelFileBytes = 16 << 20;
}  // namespace

std::string fracatlas_box_file(const std::string& image_path) {
  const fs::path image(image_path);
  const fs::path images = image.parent_path().parent_path();  // <root>/images
  if (images.filename() != "images") return {};
  const fs::path file = images.parent_path() / "Annotations" / "YOLO" / (image.stem().string() + ".txt");
  return fs::is_regular_file(file) ? file.string() : std::string{};
}

std::vector<Box> read_yolo_boxes(const std::string& path) {
  return parse_yolo_boxes(util::read_file(path, kMaxLabelFileBytes), path);
}

std::vector<Box> parse_yolo_boxes(const std::string& text, const std::string& path) {
  std::istringstream in(text);
  std::vector<Box> boxes;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    double cls, cx, cy, w, h;
    std::string rest;
    if (boxes.size() >= 10000) throw std::runtime_error(path + ": more than 10000 boxes");
    if (!(fields >> cls >> cx >> cy >> w >> h) || (fields >> rest))
      throw std::runtime_error(path + ":" + std::to_string(n) + ": expected 'class cx cy w h', got '" + line + "'");
    const bool inside = w > 0 && h > 0 && cx - w / 2 > -1e-3 && cy - h / 2 > -1e-3 && cx + w / 2 < 1 + 1e-3 &&
                        cy + h / 2 < 1 + 1e-3;
    if (!std::isfinite(cls) || cls < 0 || cls != std::floor(cls))
      throw std::runtime_error(path + ":" + std::to_string(n) + ": class is not a whole number: '" + line + "'");
    if (!std::isfinite(cx + cy + w + h) || !inside)
      throw std::runtime_error(path + ":" + std::to_string(n) + ": box outside the image: '" + line + "'");
    boxes.push_back({static_cast<float>(cx), static_cast<float>(cy), static_cast<float>(w), static_cast<float>(h)});
  }
  return boxes;
}

std::optional<std::vector<Box>> fracatlas_boxes(const std::string& image_path, const std::string& consequence) {
  const std::string file = fracatlas_box_file(image_path);
  if (file.empty()) return std::vector<Box>{};
  try {
    return read_yolo_boxes(file);
  } catch (const std::exception& e) {
    spdlog::warn("{}; {} {}", e.what(), image_path, consequence);
    return std::nullopt;
  }
}

torch::Tensor box_mask(const std::vector<Box>& boxes, int64_t h, int64_t w) {
  auto mask = torch::zeros({h, w});
  auto m = mask.accessor<float, 2>();
  for (const auto& b : boxes) {
    // Cells [floor(left * w), ceil(right * w)) overlap the box; every box covers at least one cell.
    const auto span = [](double lo, double hi, int64_t n) {
      int64_t a = std::clamp<int64_t>(static_cast<int64_t>(std::floor(lo * n)), 0, n - 1);
      int64_t z = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(hi * n)), a + 1, n);
      return std::make_pair(a, z);
    };
    const auto [x0, x1] = span(b.cx - b.w / 2, b.cx + b.w / 2, w);
    const auto [y0, y1] = span(b.cy - b.h / 2, b.cy + b.h / 2, h);
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = x0; x < x1; ++x) m[y][x] = 1;
  }
  return mask;
}

}  // namespace fracture::data
