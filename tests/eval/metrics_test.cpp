#include <gtest/gtest.h>

#include <cmath>

#include "fracture/eval/metrics.h"

using namespace fracture::eval;

TEST(Metrics, HandWorkedExample) {
  const std::vector<int> y{0, 0, 1, 1};
  const std::vector<double> p{0.1, 0.4, 0.35, 0.8};
  EXPECT_DOUBLE_EQ(roc_auc(y, p), 0.75);
  EXPECT_NEAR(average_precision(y, p), 0.5 * 1.0 + 0.5 * (2.0 / 3.0), 1e-12);
  const auto c = confusion_at(y, p, 0.35);
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fp, 1);
  EXPECT_EQ(c.tn, 1);
  EXPECT_EQ(c.fn, 0);
}

TEST(Metrics, TiesCountHalfAndDegenerateCasesAreNaN) {
  EXPECT_DOUBLE_EQ(roc_auc({0, 1}, {0.5, 0.5}), 0.5);
  EXPECT_TRUE(std::isnan(roc_auc({1, 1}, {0.2, 0.9})));
  const auto m = all_metrics({0, 0, 0}, {0.1, 0.2, 0.9}, 0.5);
  EXPECT_TRUE(std::isnan(m.at("sensitivity")));
  EXPECT_DOUBLE_EQ(m.at("specificity"), 2.0 / 3.0);
}

TEST(Metrics, ThresholdsFromValidation) {
  const std::vector<int> y{0, 0, 0, 1, 0, 1, 1, 1};
  const std::vector<double> p{0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9};
  // Youden: 0.35 gives sens 1, spec 3/4 (J = 0.75); 0.6 gives sens 3/4, spec 1 (J = 0.75): first wins.
  // Each threshold sits halfway to the next lower score (0.4, 0.3).
  EXPECT_DOUBLE_EQ(youden_threshold(y, p), 0.5);
  EXPECT_DOUBLE_EQ(threshold_for_sensitivity(y, p, 1.0), 0.325);
  EXPECT_DOUBLE_EQ(threshold_for_sensitivity(y, p, 0.7), 0.5);
  // The same by rule name, as `fracture train --threshold` and ensembles choose.
  EXPECT_DOUBLE_EQ(choose_threshold("youden", y, p), 0.5);
  EXPECT_DOUBLE_EQ(choose_threshold("sensitivity:1", y, p), 0.325);
  EXPECT_DOUBLE_EQ(choose_threshold("fixed:0.42", y, p), 0.42);
  EXPECT_THROW(choose_threshold("best", y, p), std::invalid_argument);
  // The validation decisions at the chosen threshold survive rounding-sized changes of the scores.
  for (const double eps : {-1e-6, 1e-6}) {
    std::vector<double> q = p;
    for (auto& v : q) v += eps;
    const auto m = all_metrics(y, q, youden_threshold(y, p));
    EXPECT_DOUBLE_EQ(m.at("sensitivity"), 0.75);
    EXPECT_DOUBLE_EQ(m.at("specificity"), 1.0);
  }
}

TEST(Metrics, BootstrapIntervalsContainThePointAndAreSeeded) {
  std::vector<int> y;
  std::vector<double> p;
  for (int i = 0; i < 300; ++i) {
    y.push_back(i % 4 == 0);
    p.push_back(std::fmod(i * 0.6180339887, 1.0) * 0.7 + (i % 4 == 0 ? 0.3 : 0.0));
  }
  const auto a = bootstrap_metrics(y, p, 0.5, 300, 1), b = bootstrap_metrics(y, p, 0.5, 300, 1);
  for (const auto& name : metric_names()) {
    const auto& iv = a.at(name);
    EXPECT_LE(iv.low, iv.value + 1e-12) << name;
    EXPECT_GE(iv.high, iv.value - 1e-12) << name;
    EXPECT_LT(iv.low, iv.high) << name;
    EXPECT_EQ(iv.low, b.at(name).low) << name;
  }
}

TEST(Metrics, CurvesAreMonotone) {
  const std::vector<int> y{0, 1, 0, 1, 1, 0, 0, 1};
  const std::vector<double> p{0.1, 0.9, 0.3, 0.3, 0.8, 0.2, 0.7, 0.6};
  const auto roc = roc_curve(y, p);
  EXPECT_EQ(roc.front().fpr, 0);
  EXPECT_EQ(roc.back().tpr, 1);
  for (size_t i = 1; i < roc.size(); ++i) EXPECT_GE(roc[i].tpr, roc[i - 1].tpr);
  const auto cal = calibration_bins(y, p, 10);
  int64_t n = 0;
  for (const auto& b : cal) n += b.count;
  EXPECT_EQ(n, 8);
}

TEST(Metrics, SensitivityAtSpecificityIsTheCurvesBestPoint) {
  // Ten negatives at 0.0..0.9 and positives at 0.85 and 0.5: one false
  // positive (0.9) is allowed at specificity 0.90, which admits only 0.85.
  std::vector<int> y(10, 0);
  std::vector<double> p;
  for (int i = 0; i < 10; ++i) p.push_back(i / 10.0);
  y.insert(y.end(), {1, 1});
  p.insert(p.end(), {0.85, 0.5});
  EXPECT_DOUBLE_EQ(sensitivity_at_specificity(y, p, 0.90), 0.5);
  EXPECT_DOUBLE_EQ(sensitivity_at_specificity(y, p, 0.50), 1.0);
  EXPECT_TRUE(std::isnan(sensitivity_at_specificity({1, 1}, {0.2, 0.9}, 0.9)));
}

TEST(Metrics, WilsonIntervalForAProportion) {
  const auto i = wilson_interval(8, 10);  // worked by hand from Wilson (1927)
  EXPECT_DOUBLE_EQ(i.value, 0.8);
  EXPECT_NEAR(i.low, 0.4902, 1e-4);
  EXPECT_NEAR(i.high, 0.9433, 1e-4);
  const auto none = wilson_interval(0, 5);  // upper end z^2 / (n + z^2); the normal approximation gives 0 +- 0
  EXPECT_DOUBLE_EQ(none.low, 0);
  EXPECT_NEAR(none.high, 0.4345, 1e-4);
  EXPECT_TRUE(std::isnan(wilson_interval(0, 0).value));
}
