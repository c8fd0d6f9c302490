#pragma once
// Binary classification metrics, all computed from predicted probabilities
// of the positive class (never from hard labels where probabilities exist).
// Definitions follow scikit-learn's, which the reference tests check against.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace fracture::eval {

struct Confusion {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
};
// Predicted positive when probability >= threshold.
Confusion confusion_at(const std::vector<int>& labels, const std::vector<double>& probs, double threshold);

// Area under the ROC curve (ties count one half, as Mann-Whitney U). NaN if one class is absent.
double roc_auc(const std::vector<int>& labels, const std::vector<double>& probs);
// Average precision: sum over distinct thresholds of (R_n - R_{n-1}) * P_n.
double average_precision(const std::vector<int>& labels, const std::vector<double>& probs);
double brier_score(const std::vector<int>& labels, const std::vector<double>& probs);
// Expected calibration error over `bins` equal-width probability bins:
// sum_b (n_b / N) * |mean(y in b) - mean(p in b)|.
double expected_calibration_error(const std::vector<int>& labels, const std::vector<double>& probs, int bins = 10);

struct RocPoint {
  double threshold, fpr, tpr;
};
// One point per distinct score, from the strictest threshold down (starts at (0,0)).
std::vector<RocPoint> roc_curve(const std::vector<int>& labels, const std::vector<double>& probs);
struct PrPoint {
  double threshold, recall, precision;
};
std::vector<PrPoint> pr_curve(const std::vector<int>& labels, const std::vector<double>& probs);

struct CalibrationBin {
  double mean_prob, fraction_positive;
  int64_t count;
};
std::vector<CalibrationBin> calibration_bins(const std::vector<int>& labels, const std::vector<double>& probs, int bins = 10);

// Every metric by name, threshold-dependent ones at `threshold`:
// roc_auc, average_precision, accuracy, balanced_accuracy, sensitivity,
// specificity, precision, npv, f1, mcc, cohen_kappa, brier, ece, and the
// threshold-free sensitivity_at_specificity_90 (a point on the ROC curve).
std::map<std::string, double> all_metrics(const std::vector<int>& labels, const std::vector<double>& probs, double threshold);
const std::vector<std::string>& metric_names();

struct Interval {
  double value, low, high;
};
// Percentile bootstrap of named metrics over n cases (resampled with
// replacement): `score(indices)` computes them on the cases at `indices`;
// the point estimate is score(0..n-1). NaN values of a resample (a metric it
// leaves undefined) are skipped. Deterministic for a seed.
using MetricsOfCases = std::function<std::map<std::string, double>(const std::vector<size_t>& indices)>;
std::map<std::string, Interval> bootstrap(size_t n, const MetricsOfCases& score, int resamples, uint64_t seed,
                                          double level = 0.95);

// Percentile bootstrap 95% intervals for every metric of all_metrics. Resamples lacking a class are skipped for the
// metrics they leave undefined. Deterministic for a seed.
std::map<std::string, Interval> bootstrap_metrics(const std::vector<int>& labels, const std::vector<double>& probs,
                                                  double threshold, int resamples = 1000, uint64_t seed = 0,
                                                  double level = 0.95);

// A proportion k/n with its Wilson score 95% interval (sound near 0 and 1 and
// for small n, unlike the normal approximation); NaN for n = 0.
Interval wilson_interval(int64_t successes, int64_t n);

// Operating threshold chosen on validation data: between the ROC point's
// score and the next lower score (the same validation decisions, robust to
// rounding). Youden: maximises sensitivity + specificity - 1.
double youden_threshold(const std::vector<int>& labels, const std::vector<double>& probs);
// Best sensitivity over the ROC curve's thresholds whose specificity is at
// least `min_specificity` (the curve's own point, not a validation-chosen one).
double sensitivity_at_specificity(const std::vector<int>& labels, const std::vector<double>& probs,
                                  double min_specificity);
// Highest threshold whose sensitivity reaches `target` (keeps specificity as high as possible).
double threshold_for_sensitivity(const std::vector<int>& labels, const std::vector<double>& probs, double target);
// By rule: "youden", "sensitivity:S" (threshold_for_sensitivity) or "fixed:T".
double choose_threshold(const std::string& rule, const std::vector<int>& labels, const std::vector<double>& probs);
// Checks a rule before any work: youden, sensitivity:S with 0 < S <= 1, or
// fixed:T with 0 <= T <= 1. Throws std::invalid_argument saying what is wrong.
void validate_threshold_rule(const std::string& rule);

}  // namespace fracture::eval
