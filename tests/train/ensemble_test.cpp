#include <gtest/gtest.h>

#include <cmath>

#include "fracture/train/inference.h"

namespace fracture::train {
namespace {

TEST(Ensemble, TwoClassesAverageTheLogOdds) {
  // Positive-class probabilities of two members for three images.
  const std::vector<double> a{0.9, 0.2, 0.5}, b{0.6, 0.01, 0.5};
  auto as_probs = [](const std::vector<double>& p) {
    auto t = torch::tensor(std::vector<float>(p.begin(), p.end())).unsqueeze(1);
    return torch::cat({1 - t, t}, 1);
  };
  auto c = combine_probabilities({as_probs(a), as_probs(b)});
  for (int i = 0; i < 3; ++i) {
    const double mean_logit = (std::log(a[i] / (1 - a[i])) + std::log(b[i] / (1 - b[i]))) / 2;
    EXPECT_NEAR(c[i][1].item<double>(), 1 / (1 + std::exp(-mean_logit)), 1e-6) << i;
    EXPECT_NEAR((c[i][0] + c[i][1]).item<double>(), 1.0, 1e-6);
  }
}

TEST(Ensemble, OneMemberOrIdenticalMembersChangeNothing) {
  auto p = torch::softmax(torch::randn({5, 3}), 1);
  EXPECT_TRUE(torch::equal(combine_probabilities({p}), p));
  EXPECT_TRUE(torch::allclose(combine_probabilities({p, p, p}), p, 1e-5, 1e-6));
}

TEST(Ensemble, UnreadableRowsStayNaNAndShapesMustAgree) {
  auto p = torch::full({2, 2}, 0.5);
  auto q = p.clone();
  q[1] = std::numeric_limits<float>::quiet_NaN();
  auto c = combine_probabilities({p, q});
  EXPECT_FALSE(std::isnan(c[0][1].item<float>()));
  EXPECT_TRUE(std::isnan(c[1][1].item<float>()));
  EXPECT_THROW(combine_probabilities({p, torch::full({3, 2}, 0.5)}), std::invalid_argument);
  EXPECT_THROW(combine_probabilities({}), std::invalid_argument);
}

}  // namespace
}  // namespace fracture::train
