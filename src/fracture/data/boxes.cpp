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

std::string box_file_for(const std::string& image_path) {
  const fs::path image(image_path);
  const std::string label = image.stem().string() + ".txt";
  // FracAtlas: <root>/images/<class>/<stem>.jpg
  const fs::path class_parent = image.parent_path().parent_path();
  if (class_parent.filename() == "images") {
    const fs::path file = class_parent.parent_path() / "Annotations" / "YOLO" / label;
    if (fs::is_regular_file(file)) return file.string();
  }
  // Ultralytics: the nearest folder named images/ above the image has a labels/ twin.
  fs::path below;  // the image's folders under images/
  for (fs::path dir = image.parent_path(); !dir.empty() && dir != dir.parent_path(); dir = dir.parent_path()) {
    if (dir.filename() == "images") {
      const fs::path file = dir.parent_path() / "labels" / below / label;
      return fs::is_regular_file(file) ? file.string() : std::string{};
    }
    below = dir.filename() / below;
  }
  return {};
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
    if (boxes.size() >= 10000) throw std::runtime_error(path + ": more than 10000 boxes");
    const std::string where = path + ":" + std::to_string(n) + ": ";
    std::istringstream fields(line);
    std::vector<double> v;
    for (double x; v.size() <= 20001 && fields >> x;) v.push_back(x);  // up to 10000 points
    std::string rest;
    const bool polygon = v.size() >= 7 && v.size() % 2 == 1;  // class and three or more points
    fields.clear();
    if ((v.size() != 5 && !polygon) || v.size() > 20001 || fields >> rest)
      throw std::runtime_error(where + "expected 'class cx cy w h' or 'class x1 y1 x2 y2 x3 y3 ...', got '" + line + "'");
    if (!std::isfinite(v[0]) || v[0] < 0 || v[0] != std::floor(v[0]))
      throw std::runtime_error(where + "class is not a whole number: '" + line + "'");
    double cx = v[1], cy = v[2], w = v[3], h = v[4];
    if (polygon) {  // its bounding box
      double x0 = 1e300, y0 = 1e300, x1 = -1e300, y1 = -1e300;
      for (size_t i = 1; i + 1 < v.size(); i += 2) {
        if (!std::isfinite(v[i]) || !std::isfinite(v[i + 1])) x0 = std::nan("");
        x0 = std::min(x0, v[i]), x1 = std::max(x1, v[i]), y0 = std::min(y0, v[i + 1]), y1 = std::max(y1, v[i + 1]);
      }
      cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, w = x1 - x0, h = y1 - y0;
    }
    const bool inside = w > 0 && h > 0 && cx - w / 2 > -1e-3 && cy - h / 2 > -1e-3 && cx + w / 2 < 1 + 1e-3 &&
                        cy + h / 2 < 1 + 1e-3;
    if (!std::isfinite(cx + cy + w + h) || !inside)
      throw std::runtime_error(where + (polygon ? "polygon" : "box") + " outside the image or empty: '" + line + "'");
    boxes.push_back({static_cast<float>(cx), static_cast<float>(cy), static_cast<float>(w), static_cast<float>(h)});
  }
  return boxes;
}

std::optional<std::vector<Box>> image_boxes(const std::string& image_path, const std::string& consequence) {
  const std::string file = box_file_for(image_path);
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
