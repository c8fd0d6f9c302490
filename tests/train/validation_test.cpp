// The selection score with several sources, and --source-weights' parsing.
#include <gtest/gtest.h>

#include "fracture/eval/metrics.h"
#include "fracture/train/validation.h"

using namespace fracture;

TEST(Validation, MeanOfPerSourceAucsOneSourceAsBefore) {
  const auto p = torch::tensor({0.9f, 0.1f, 0.6f, 0.4f, 0.7f, 0.3f, 0.2f, 0.8f}).reshape({4, 2});
  const auto labels = torch::tensor(std::vector<int64_t>{0, 0, 1, 1});
  const std::vector<std::string> one(4, "x");
  const auto single = train::score_validation(p, labels, one);
  std::vector<double> pos;
  for (int i = 0; i < 4; ++i) pos.push_back(p[i][1].item<float>());
  EXPECT_DOUBLE_EQ(single.auc, eval::roc_auc({0, 0, 1, 1}, pos));
  EXPECT_DOUBLE_EQ(single.auc, single.pooled_auc);
  EXPECT_TRUE(single.auc_by_source.empty());

  // Two sources with their own base scores (b's negative scores above a's
  // positive): each perfectly ranked, pooled not.
  const auto p2 = torch::tensor({0.8f, 0.2f, 0.7f, 0.3f, 0.4f, 0.6f, 0.1f, 0.9f, 0.2f, 0.8f, 0.05f, 0.95f})
                      .reshape({6, 2});
  const auto y2 = torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 0, 1});
  const auto two = train::score_validation(p2, y2, {"a", "a", "a", "b", "b", "b"});
  ASSERT_EQ(two.auc_by_source.size(), 2u);
  EXPECT_DOUBLE_EQ(two.auc_by_source.at("a"), 1.0);
  EXPECT_DOUBLE_EQ(two.auc_by_source.at("b"), 1.0);
  EXPECT_DOUBLE_EQ(two.auc, 1.0);
  EXPECT_NEAR(two.pooled_auc, eval::roc_auc({0, 0, 1, 1, 0, 1}, {0.2, 0.3, 0.6, 0.9, 0.8, 0.95}), 1e-6);
  EXPECT_LT(two.pooled_auc, 1.0);

  // A source whose validation rows hold one class has no AUC: left out of the mean.
  const auto lone = train::score_validation(p2, y2, {"a", "b", "a", "b", "c", "b"});
  EXPECT_EQ(lone.auc_by_source.count("c"), 0u);  // one negative only
  EXPECT_DOUBLE_EQ(lone.auc, (lone.auc_by_source.at("a") + lone.auc_by_source.at("b")) / 2);
}

TEST(Validation, SourceWeightsParseOrNameTheBadItem) {
  const auto w = train::parse_source_weights("fracatlas=1,bone-fracture-yolo=0.5");
  EXPECT_DOUBLE_EQ(w.at("fracatlas"), 1.0);
  EXPECT_DOUBLE_EQ(w.at("bone-fracture-yolo"), 0.5);
  EXPECT_TRUE(train::parse_source_weights("").empty());
  for (const char* bad : {"fracatlas", "fracatlas=", "=1", "a=0", "a=-1", "a=1x", "a=nan", "a=1,a=2", "/x=1", "a/=1",
                          "a/x=1,a/x=2"}) {
    try {
      train::parse_source_weights(bad);
      FAIL() << bad;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--source-weights"), std::string::npos) << e.what();
    }
  }
}

// A class of a source: its own key wins over its source's, which wins over 1.
TEST(Validation, SourceClassWeightsNarrowTheSourceWeight) {
  const auto w = train::parse_source_weights("yolo=2,yolo/non_fractured=0.5,atlas/fractured=3");
  EXPECT_DOUBLE_EQ(train::source_weight_of(w, "yolo", "non_fractured"), 0.5);
  EXPECT_DOUBLE_EQ(train::source_weight_of(w, "yolo", "fractured"), 2.0);
  EXPECT_DOUBLE_EQ(train::source_weight_of(w, "atlas", "fractured"), 3.0);
  EXPECT_DOUBLE_EQ(train::source_weight_of(w, "atlas", "non_fractured"), 1.0);
  EXPECT_DOUBLE_EQ(train::source_weight_of(w, "other", "fractured"), 1.0);
}
