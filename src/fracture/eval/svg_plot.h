#pragma once
// Small, dependency-free SVG line plots: ROC, precision-recall, calibration
// and training curves. SVG because it is text (diffs, no image library) and
// every browser and Markdown viewer shows it.
#include <cstdint>
#include <string>
#include <vector>

namespace fracture::eval {

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::string colour = "#1f77b4";
  bool dashed = false;
  bool markers = false;
};

struct Plot {
  std::string title, x_label, y_label;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  bool auto_range = false;  // fit the axes to the data
  std::vector<Series> series;
  std::vector<std::string> notes;  // lines of text in the lower right
};

std::string render_svg(const Plot& plot, int width = 480, int height = 400);

// A confusion matrix as a heat map: rows the true classes, columns the
// predicted ones, each cell shaded by its share of the row (recall on the
// diagonal) and labelled with that share and its count.
std::string render_confusion_svg(const std::string& title, const std::vector<std::string>& class_names,
                                 const std::vector<std::vector<int64_t>>& counts);

}  // namespace fracture::eval
