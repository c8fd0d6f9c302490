#include "fracture/train/validation.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

#include "fracture/eval/metrics.h"

namespace fracture::train {
namespace {

// Mean over the scored classes of ROC-AUC and AP, on the rows in `keep`
// (all when empty). False when some class is missing from those rows (the
// figures are then what eval::roc_auc gives for one class).
bool mean_auc(const torch::Tensor& probs, const torch::Tensor& labels, const std::vector<int64_t>& keep, double& auc,
              double& ap) {
  const int64_t classes = probs.size(1);
  auto pa = probs.accessor<float, 2>();
  auto la = labels.accessor<int64_t, 1>();
  auc = ap = 0;
  bool complete = true;
  const int first_class = classes == 2 ? 1 : 0;
  for (int64_t c = first_class; c < classes; ++c) {
    std::vector<int> y;
    std::vector<double> p;
    auto add = [&](int64_t i) {
      y.push_back(la[i] == c);
      p.push_back(pa[i][c]);
    };
    if (keep.empty())
      for (int64_t i = 0; i < probs.size(0); ++i) add(i);
    else
      for (int64_t i : keep) add(i);
    int positives = 0;
    for (int v : y) positives += v;
    complete = complete && positives > 0 && positives < static_cast<int>(y.size());
    auc += eval::roc_auc(y, p);
    ap += eval::average_precision(y, p);
  }
  const auto n = static_cast<double>(classes - first_class);
  auc /= n;
  ap /= n;
  return complete;
}

}  // namespace

ValidationScore score_validation(const torch::Tensor& probs, const torch::Tensor& labels,
                                 const std::vector<std::string>& row_sources) {
  ValidationScore s;
  mean_auc(probs, labels, {}, s.pooled_auc, s.ap);
  std::map<std::string, std::vector<int64_t>> rows;
  for (size_t i = 0; i < row_sources.size(); ++i) rows[row_sources[i]].push_back(static_cast<int64_t>(i));
  if (rows.size() <= 1) {
    s.auc = s.pooled_auc;
    return s;
  }
  double sum = 0;
  int scored = 0;
  for (const auto& [source, keep] : rows) {
    double auc = 0, ap = 0;
    if (!mean_auc(probs, labels, keep, auc, ap)) continue;
    s.auc_by_source[source] = auc;
    sum += auc;
    ++scored;
  }
  s.auc = scored > 0 ? sum / scored : std::nan("");
  return s;
}

nlohmann::json validation_summary(const ValidationScore& score) {
  nlohmann::json j = {{"val_roc_auc", score.auc}, {"val_average_precision", score.ap}};
  if (!score.auc_by_source.empty())
    j["val_roc_auc_by_source"] = score.auc_by_source, j["val_roc_auc_pooled"] = score.pooled_auc;
  return j;
}

double threshold_on_validation(const std::string& rule, const torch::Tensor& probs, const torch::Tensor& labels) {
  std::vector<int> y;
  std::vector<double> p;
  auto pa = probs.accessor<float, 2>();
  auto la = labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < probs.size(0); ++i) {
    y.push_back(la[i] == 1);
    p.push_back(pa[i][1]);
  }
  return eval::choose_threshold(rule, y, p);
}

std::map<std::string, double> parse_source_weights(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    const std::string name = eq == std::string::npos ? "" : item.substr(0, eq);
    double w = -1;
    size_t used = 0;
    try {
      if (eq != std::string::npos) w = std::stod(item.substr(eq + 1), &used);
    } catch (const std::exception&) {
      w = -1;
    }
    const auto slash = name.find('/');
    const bool bad_name = name.empty() || slash == 0 || (slash != std::string::npos && slash + 1 == name.size());
    if (bad_name || used == 0 || used != item.size() - eq - 1 || !std::isfinite(w) || w <= 0 || w > 1000)
      throw std::invalid_argument("--source-weights: '" + item +
                                  "' is not SOURCE=WEIGHT or SOURCE/CLASS=WEIGHT with a weight above 0 "
                                  "(e.g. fracatlas=1,bone-fracture-yolo/non_fractured=0.5)");
    if (!out.emplace(name, w).second) throw std::invalid_argument("--source-weights: " + name + " given twice");
  }
  return out;
}

std::string source_class_key(const std::string& source, const std::string& class_name) {
  return source + "/" + class_name;
}

double source_weight_of(const std::map<std::string, double>& weights, const std::string& source,
                        const std::string& class_name) {
  if (const auto it = weights.find(source_class_key(source, class_name)); it != weights.end()) return it->second;
  if (const auto it = weights.find(source); it != weights.end()) return it->second;
  return 1.0;
}

}  // namespace fracture::train
