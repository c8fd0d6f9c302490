// N-class metrics on a worked example (scikit-learn agreement on random
// cases is in tests/reference), their bootstrap, and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "fracture/eval/multiclass.h"

using namespace fracture::eval;

namespace {
const std::vector<std::string> kNames{"a", "b", "c"};
}  // namespace

TEST(Multiclass, WorkedExample) {
  // Truth a a b b c c; predicted a b b b a c (arg-max of each row).
  const std::vector<int> y{0, 0, 1, 1, 2, 2};
  const ProbabilityRows p{{0.7, 0.2, 0.1}, {0.3, 0.6, 0.1}, {0.1, 0.8, 0.1},
                          {0.2, 0.5, 0.3}, {0.5, 0.1, 0.4}, {0.1, 0.2, 0.7}};
  const auto m = multiclass_metrics(y, p, kNames);
  EXPECT_DOUBLE_EQ(m.at("accuracy"), 4.0 / 6);
  EXPECT_DOUBLE_EQ(m.at("recall/a"), 0.5);
  EXPECT_DOUBLE_EQ(m.at("precision/b"), 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.at("f1/b"), 0.8);
  EXPECT_DOUBLE_EQ(m.at("balanced_accuracy"), (0.5 + 1 + 0.5) / 3);
  EXPECT_DOUBLE_EQ(m.at("top2_accuracy"), 1.0);  // row 5: c (0.4) is second
  // Kappa: observed 4/6; chance (2*2 + 2*3 + 2*1) / 36 = 1/3.
  EXPECT_NEAR(m.at("cohen_kappa"), (4.0 / 6 - 1.0 / 3) / (1 - 1.0 / 3), 1e-12);
  EXPECT_DOUBLE_EQ(m.at("roc_auc/c"), 1.0);  // both c rows have the highest c probabilities
  EXPECT_EQ(confusion_matrix(y, {0, 1, 1, 1, 0, 2}, 3), (std::vector<std::vector<int64_t>>{{1, 1, 0}, {0, 2, 0}, {1, 0, 1}}));
  EXPECT_EQ(predicted_class({0.4, 0.4, 0.2}), 0);  // ties: the first, as numpy's argmax
}

TEST(Multiclass, BootstrapIsSeededAndBracketsThePoint) {
  std::vector<int> y;
  ProbabilityRows p;
  for (int i = 0; i < 60; ++i) {
    y.push_back(i % 3);
    std::vector<double> row{0.2, 0.2, 0.2};
    row[(i % 7 == 0) ? (i + 1) % 3 : i % 3] = 0.6;
    p.push_back(row);
  }
  const auto a = bootstrap_multiclass_metrics(y, p, kNames, 200, 5);
  const auto b = bootstrap_multiclass_metrics(y, p, kNames, 200, 5);
  for (const auto& name : multiclass_summary_names()) {
    EXPECT_EQ(a.at(name).low, b.at(name).low) << name;
    EXPECT_LE(a.at(name).low, a.at(name).value) << name;
    EXPECT_GE(a.at(name).high, a.at(name).value) << name;
  }
  EXPECT_LT(a.at("accuracy").low, a.at("accuracy").high);
}

TEST(Multiclass, BadInputIsRefused) {
  EXPECT_THROW(multiclass_metrics({0, 3}, {{1, 0, 0}, {0, 1, 0}}, kNames), std::invalid_argument);  // label 3
  EXPECT_THROW(multiclass_metrics({0, 1}, {{1, 0, 0}, {0, 1}}, kNames), std::invalid_argument);     // short row
  EXPECT_THROW(multiclass_metrics({0}, {{1, 0, 0}, {0, 1, 0}}, kNames), std::invalid_argument);     // lengths
}
