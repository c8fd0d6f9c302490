#include "fracture/eval/metrics.h"

#include <cstdlib>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

namespace fracture::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check(const std::vector<int>& y, const std::vector<double>& p) {
  if (y.size() != p.size()) throw std::invalid_argument("labels and probabilities differ in length");
}

double safe_div(double a, double b) { return b == 0 ? 0.0 : a / b; }

// Indices sorted by descending score.
std::vector<size_t> by_score_desc(const std::vector<double>& p) {
  std::vector<size_t> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  return idx;
}

}  // namespace

Confusion confusion_at(const std::vector<int>& y, const std::vector<double>& p, double t) {
  check(y, p);
  Confusion c;
  for (size_t i = 0; i < y.size(); ++i) {
    const bool pred = p[i] >= t;
    if (y[i]) (pred ? c.tp : c.fn)++;
    else (pred ? c.fp : c.tn)++;
  }
  return c;
}

double roc_auc(const std::vector<int>& y, const std::vector<double>& p) {
  check(y, p);
  // Mann-Whitney: average ranks of positives, ties sharing their mean rank.
  std::vector<size_t> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  double rank_sum = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && p[idx[j]] == p[idx[i]]) ++j;
    const double mean_rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2.0;  // 1-based
    for (size_t k = i; k < j; ++k)
      if (y[idx[k]]) rank_sum += mean_rank, ++pos;
    i = j;
  }
  const int64_t neg = static_cast<int64_t>(y.size()) - pos;
  if (pos == 0 || neg == 0) return kNaN;
  return (rank_sum - pos * (pos + 1) / 2.0) / (static_cast<double>(pos) * neg);
}

std::vector<RocPoint> roc_curve(const std::vector<int>& y, const std::vector<double>& p) {
  check(y, p);
  const auto idx = by_score_desc(p);
  const double pos = std::count(y.begin(), y.end(), 1), neg = static_cast<double>(y.size()) - pos;
  std::vector<RocPoint> out{{std::numeric_limits<double>::infinity(), 0, 0}};
  double tp = 0, fp = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    for (; j < idx.size() && p[idx[j]] == p[idx[i]]; ++j) (y[idx[j]] ? tp : fp) += 1;
    out.push_back({p[idx[i]], safe_div(fp, neg), safe_div(tp, pos)});
    i = j;
  }
  return out;
}

std::vector<PrPoint> pr_curve(const std::vector<int>& y, const std::vector<double>& p) {
  check(y, p);
  const auto idx = by_score_desc(p);
  const double pos = std::count(y.begin(), y.end(), 1);
  std::vector<PrPoint> out;
  double tp = 0, fp = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    for (; j < idx.size() && p[idx[j]] == p[idx[i]]; ++j) (y[idx[j]] ? tp : fp) += 1;
    out.push_back({p[idx[i]], safe_div(tp, pos), safe_div(tp, tp + fp)});
    i = j;
  }
  return out;
}

double average_precision(const std::vector<int>& y, const std::vector<double>& p) {
  if (std::count(y.begin(), y.end(), 1) == 0) return kNaN;
  double ap = 0, prev_recall = 0;
  for (const auto& pt : pr_curve(y, p)) {
    ap += (pt.recall - prev_recall) * pt.precision;
    prev_recall = pt.recall;
  }
  return ap;
}

double brier_score(const std::vector<int>& y, const std::vector<double>& p) {
  check(y, p);
  double s = 0;
  for (size_t i = 0; i < y.size(); ++i) s += (p[i] - y[i]) * (p[i] - y[i]);
  return y.empty() ? kNaN : s / static_cast<double>(y.size());
}

std::vector<CalibrationBin> calibration_bins(const std::vector<int>& y, const std::vector<double>& p, int bins) {
  check(y, p);
  std::vector<double> sum_p(bins, 0), sum_y(bins, 0);
  std::vector<int64_t> n(bins, 0);
  for (size_t i = 0; i < y.size(); ++i) {
    const int b = std::clamp(static_cast<int>(p[i] * bins), 0, bins - 1);
    sum_p[b] += p[i], sum_y[b] += y[i], ++n[b];
  }
  std::vector<CalibrationBin> out;
  for (int b = 0; b < bins; ++b)
    if (n[b] > 0) out.push_back({sum_p[b] / n[b], sum_y[b] / n[b], n[b]});
  return out;
}

double expected_calibration_error(const std::vector<int>& y, const std::vector<double>& p, int bins) {
  if (y.empty()) return kNaN;
  double e = 0;
  for (const auto& b : calibration_bins(y, p, bins))
    e += static_cast<double>(b.count) / static_cast<double>(y.size()) * std::abs(b.fraction_positive - b.mean_prob);
  return e;
}

const std::vector<std::string>& metric_names() {
  static const std::vector<std::string> names = {
      "roc_auc", "average_precision", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision",
      "npv",     "f1",                "mcc",      "cohen_kappa",       "brier",       "ece",
      "sensitivity_at_specificity_90"};
  return names;
}

std::map<std::string, double> all_metrics(const std::vector<int>& y, const std::vector<double>& p, double t) {
  const Confusion c = confusion_at(y, p, t);
  const double tp = c.tp, fp = c.fp, tn = c.tn, fn = c.fn, n = tp + fp + tn + fn;
  std::map<std::string, double> m;
  m["roc_auc"] = roc_auc(y, p);
  m["average_precision"] = average_precision(y, p);
  m["accuracy"] = safe_div(tp + tn, n);
  m["sensitivity"] = tp + fn > 0 ? tp / (tp + fn) : kNaN;
  m["specificity"] = tn + fp > 0 ? tn / (tn + fp) : kNaN;
  m["balanced_accuracy"] = (m["sensitivity"] + m["specificity"]) / 2;
  m["precision"] = safe_div(tp, tp + fp);
  m["npv"] = safe_div(tn, tn + fn);
  m["f1"] = safe_div(2 * tp, 2 * tp + fp + fn);
  const double mcc_den = std::sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn));
  m["mcc"] = safe_div(tp * tn - fp * fn, mcc_den);
  // Cohen's kappa: observed agreement against chance agreement.
  const double po = safe_div(tp + tn, n);
  const double pe = safe_div((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp), n * n);
  m["cohen_kappa"] = pe == 1 ? 0.0 : (po - pe) / (1 - pe);
  m["brier"] = brier_score(y, p);
  m["ece"] = expected_calibration_error(y, p);
  m["sensitivity_at_specificity_90"] = sensitivity_at_specificity(y, p, 0.90);
  return m;
}

std::map<std::string, Interval> bootstrap(size_t n, const MetricsOfCases& score, int resamples, uint64_t seed,
                                          double level) {
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  const auto point = score(idx);
  std::map<std::string, std::vector<double>> samples;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, n == 0 ? 0 : n - 1);
  for (int r = 0; r < resamples && n > 0; ++r) {
    for (auto& i : idx) i = pick(rng);
    for (const auto& [name, v] : score(idx))
      if (!std::isnan(v)) samples[name].push_back(v);
  }
  std::map<std::string, Interval> out;
  const double alpha = (1 - level) / 2;
  for (const auto& [name, v] : point) {
    auto s = samples[name];
    if (s.empty()) {
      out[name] = {v, kNaN, kNaN};
      continue;
    }
    std::sort(s.begin(), s.end());
    auto q = [&](double f) {  // linear interpolation between order statistics (numpy's default)
      const double pos = f * static_cast<double>(s.size() - 1);
      const size_t lo = static_cast<size_t>(std::floor(pos));
      const size_t hi = std::min(lo + 1, s.size() - 1);
      return s[lo] + (s[hi] - s[lo]) * (pos - static_cast<double>(lo));
    };
    out[name] = {v, q(alpha), q(1 - alpha)};
  }
  return out;
}

std::map<std::string, Interval> bootstrap_metrics(const std::vector<int>& y, const std::vector<double>& p, double t,
                                                  int resamples, uint64_t seed, double level) {
  check(y, p);
  std::vector<int> by;
  std::vector<double> bp;
  return bootstrap(
      y.size(),
      [&](const std::vector<size_t>& idx) {
        by.clear(), bp.clear();
        for (size_t i : idx) by.push_back(y[i]), bp.push_back(p[i]);
        return all_metrics(by, bp, t);
      },
      resamples, seed, level);
}

// A ROC threshold is one sample's own score, so the smallest rounding
// difference (BatchNorm folded, oneDNN's kernel choice, float16 weights) can
// move that sample across it. Halfway to the next lower score classifies the
// validation set the same way, with a margin.
static double midpoint_below(const std::vector<double>& p, double t) {
  double lower = -std::numeric_limits<double>::infinity();
  for (double v : p)
    if (v < t) lower = std::max(lower, v);
  return std::isinf(lower) ? t : (t + lower) / 2;
}

double youden_threshold(const std::vector<int>& y, const std::vector<double>& p) {
  double best_j = -1, best_t = 0.5;
  for (const auto& pt : roc_curve(y, p)) {
    if (std::isinf(pt.threshold)) continue;
    const double j = pt.tpr - pt.fpr;
    if (j > best_j) best_j = j, best_t = pt.threshold;
  }
  return best_j < 0 ? best_t : midpoint_below(p, best_t);
}

double sensitivity_at_specificity(const std::vector<int>& y, const std::vector<double>& p, double min_specificity) {
  if (std::count(y.begin(), y.end(), 1) == 0 || std::count(y.begin(), y.end(), 0) == 0) return kNaN;
  double best = 0;
  for (const auto& pt : roc_curve(y, p))
    if (1 - pt.fpr >= min_specificity - 1e-12) best = std::max(best, pt.tpr);
  return best;
}

double threshold_for_sensitivity(const std::vector<int>& y, const std::vector<double>& p, double target) {
  for (const auto& pt : roc_curve(y, p))
    if (!std::isinf(pt.threshold) && pt.tpr >= target) return midpoint_below(p, pt.threshold);
  return 0.0;
}

namespace {

// The number after "name:" in a rule, which must be all of the rest and lie in [lo, hi].
double rule_number(const std::string& rule, size_t at, double lo, double hi) {
  const std::string text = rule.substr(at);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v) || v < lo || v > hi)
    throw std::invalid_argument("threshold rule '" + rule + "': '" + text + "' is not a number in [" +
                                std::to_string(lo).substr(0, 3) + ", " + std::to_string(hi).substr(0, 3) + "]");
  return v;
}

}  // namespace

void validate_threshold_rule(const std::string& rule) {
  if (rule == "youden") return;
  if (rule.rfind("sensitivity:", 0) == 0) {
    if (rule_number(rule, 12, 0, 1) <= 0) throw std::invalid_argument("threshold rule '" + rule + "': sensitivity must be above 0");
    return;
  }
  if (rule.rfind("fixed:", 0) == 0) {
    rule_number(rule, 6, 0, 1);
    return;
  }
  throw std::invalid_argument("threshold rule must be youden, sensitivity:S or fixed:T, not '" + rule + "'");
}

double choose_threshold(const std::string& rule, const std::vector<int>& labels, const std::vector<double>& probs) {
  validate_threshold_rule(rule);
  if (rule == "youden") return youden_threshold(labels, probs);
  if (rule.rfind("sensitivity:", 0) == 0) return threshold_for_sensitivity(labels, probs, rule_number(rule, 12, 0, 1));
  return rule_number(rule, 6, 0, 1);
}

Interval wilson_interval(int64_t successes, int64_t n) {
  if (n <= 0) return {std::nan(""), std::nan(""), std::nan("")};
  const double z = 1.959963984540054, p = static_cast<double>(successes) / static_cast<double>(n);
  const double nn = static_cast<double>(n), centre = (p + z * z / (2 * nn)) / (1 + z * z / nn);
  const double half = z / (1 + z * z / nn) * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn));
  return {p, std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

}  // namespace fracture::eval
