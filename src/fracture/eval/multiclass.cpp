#include "fracture/eval/multiclass.h"

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>

namespace fracture::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double ratio(double a, double b) { return b == 0 ? 0.0 : a / b; }  // scikit-learn's zero_division=0

void check(const std::vector<int>& y, const ProbabilityRows& p, size_t classes) {
  if (classes < 2) throw std::invalid_argument("multiclass metrics need at least two classes");
  if (y.size() != p.size()) throw std::invalid_argument("labels and probability rows differ in number");
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] < 0 || static_cast<size_t>(y[i]) >= classes)
      throw std::invalid_argument("label " + std::to_string(y[i]) + " is not a class index below " + std::to_string(classes));
    if (p[i].size() != classes)
      throw std::invalid_argument("a probability row holds " + std::to_string(p[i].size()) + " values for " +
                                  std::to_string(classes) + " classes");
  }
}

// Whether the true class is among the two most probable, ranking tied
// probabilities by class index, higher first (scikit-learn's
// top_k_accuracy_score sorts with a stable sort and reverses).
bool in_top_two(const std::vector<double>& row, int truth) {
  int above = 0;
  for (size_t j = 0; j < row.size(); ++j) {
    const int c = static_cast<int>(j);
    if (row[j] > row[truth] || (row[j] == row[truth] && c > truth)) ++above;
  }
  return above < 2;
}

}  // namespace

int predicted_class(const std::vector<double>& row) {
  int best = 0;
  for (size_t j = 1; j < row.size(); ++j)
    if (row[j] > row[best]) best = static_cast<int>(j);
  return best;
}

std::vector<std::vector<int64_t>> confusion_matrix(const std::vector<int>& y, const std::vector<int>& pred, int classes) {
  std::vector<std::vector<int64_t>> m(classes, std::vector<int64_t>(classes, 0));
  for (size_t i = 0; i < y.size(); ++i) ++m.at(y[i]).at(pred[i]);
  return m;
}

const std::vector<std::string>& multiclass_summary_names() {
  static const std::vector<std::string> names{"accuracy",      "balanced_accuracy", "macro_f1",
                                              "macro_roc_auc", "top2_accuracy",     "cohen_kappa"};
  return names;
}

const std::vector<std::string>& per_class_metric_names() {
  static const std::vector<std::string> names{"precision", "recall", "f1", "roc_auc"};
  return names;
}

std::map<std::string, double> multiclass_metrics(const std::vector<int>& y, const ProbabilityRows& p,
                                                 const std::vector<std::string>& class_names) {
  const size_t k = class_names.size();
  check(y, p, k);
  const int classes = static_cast<int>(k);
  std::vector<int> pred;
  for (const auto& row : p) pred.push_back(predicted_class(row));
  const auto cm = confusion_matrix(y, pred, classes);
  const double n = static_cast<double>(y.size());
  std::vector<double> truth(k, 0), called(k, 0);
  double correct = 0, top2 = 0;
  for (size_t i = 0; i < y.size(); ++i) top2 += in_top_two(p[i], y[i]);
  for (size_t a = 0; a < k; ++a) {
    correct += static_cast<double>(cm[a][a]);
    for (size_t b = 0; b < k; ++b) truth[a] += static_cast<double>(cm[a][b]), called[b] += static_cast<double>(cm[a][b]);
  }
  std::map<std::string, double> m;
  m["accuracy"] = ratio(correct, n);
  m["top2_accuracy"] = ratio(top2, n);
  double recall_sum = 0, f1_sum = 0, auc_sum = 0;
  int with_truth = 0, seen = 0, with_auc = 0;
  for (size_t c = 0; c < k; ++c) {
    const double tp = static_cast<double>(cm[c][c]);
    const double precision = ratio(tp, called[c]), recall = ratio(tp, truth[c]);
    const double f1 = ratio(2 * tp, truth[c] + called[c]);
    std::vector<int> is_c(y.size());
    std::vector<double> p_c(y.size());
    for (size_t i = 0; i < y.size(); ++i) is_c[i] = y[i] == static_cast<int>(c), p_c[i] = p[i][c];
    const double auc = roc_auc(is_c, p_c);  // NaN where the class is absent, or is every image
    const std::string& name = class_names[c];
    m["precision/" + name] = precision;
    m["recall/" + name] = truth[c] > 0 ? recall : kNaN;
    m["f1/" + name] = f1;
    m["roc_auc/" + name] = auc;
    if (truth[c] > 0) recall_sum += recall, ++with_truth;
    if (truth[c] + called[c] > 0) f1_sum += f1, ++seen;
    if (!std::isnan(auc)) auc_sum += auc, ++with_auc;
  }
  m["balanced_accuracy"] = with_truth ? recall_sum / with_truth : kNaN;
  m["macro_f1"] = seen ? f1_sum / seen : kNaN;
  m["macro_roc_auc"] = with_auc ? auc_sum / with_auc : kNaN;
  // Cohen's kappa: observed agreement against the agreement of independent
  // raters with the same marginals.
  double chance = 0;
  for (size_t c = 0; c < k; ++c) chance += truth[c] * called[c];
  chance = ratio(chance, n * n);
  m["cohen_kappa"] = chance == 1 ? 0.0 : (m["accuracy"] - chance) / (1 - chance);
  return m;
}

std::map<std::string, Interval> bootstrap_multiclass_metrics(const std::vector<int>& y, const ProbabilityRows& p,
                                                             const std::vector<std::string>& class_names, int resamples,
                                                             uint64_t seed, double level) {
  check(y, p, class_names.size());
  std::vector<int> by;
  ProbabilityRows bp;
  return bootstrap(
      y.size(),
      [&](const std::vector<size_t>& idx) {
        by.clear(), bp.clear();
        for (size_t i : idx) by.push_back(y[i]), bp.push_back(p[i]);
        return multiclass_metrics(by, bp, class_names);
      },
      resamples, seed, level);
}

}  // namespace fracture::eval
