// Every metric against scikit-learn on random data with ties, binary and N-class.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "fracture/eval/metrics.h"
#include "fracture/eval/multiclass.h"

namespace {

nlohmann::json read_cases(const std::string& name) {
  const char* dir = std::getenv("FRACTURE_REFERENCE_DIR");
  std::ifstream in(std::string(dir ? dir : "reference") + "/" + name);
  if (!in) throw std::runtime_error(name + " missing: run the reference_tensors test first");
  return nlohmann::json::parse(in);
}

}  // namespace

TEST(MetricsReference, EveryMetricMatchesScikitLearn) {
  const auto cases = read_cases("metrics_cases.json");
  ASSERT_GE(cases.size(), 8u);
  for (const auto& c : cases) {
    const auto y = c["labels"].get<std::vector<int>>();
    const auto p = c["probs"].get<std::vector<double>>();
    const auto got = fracture::eval::all_metrics(y, p, c["threshold"].get<double>());
    for (const auto& [name, want] : c["expected"].items()) {
      ASSERT_TRUE(got.count(name)) << name;
      EXPECT_NEAR(got.at(name), want.get<double>(), 1e-9) << name << " n=" << y.size() << " t=" << c["threshold"];
    }
  }
}

TEST(MetricsReference, EveryMulticlassMetricMatchesScikitLearn) {
  const auto cases = read_cases("multiclass_cases.json");
  ASSERT_GE(cases.size(), 4u);
  for (const auto& c : cases) {
    const auto y = c["labels"].get<std::vector<int>>();
    const auto p = c["probs"].get<fracture::eval::ProbabilityRows>();
    const auto names = c["classes"].get<std::vector<std::string>>();
    const auto got = fracture::eval::multiclass_metrics(y, p, names);
    for (const auto& [name, want] : c["expected"].items()) {
      ASSERT_TRUE(got.count(name)) << name;
      EXPECT_NEAR(got.at(name), want.get<double>(), 1e-9) << name << " n=" << y.size() << " classes=" << names.size();
    }
    for (const auto& absent : c["absent"]) {  // no truth, so no recall and no ROC-AUC
      EXPECT_TRUE(std::isnan(got.at("recall/" + absent.get<std::string>())));
      EXPECT_TRUE(std::isnan(got.at("roc_auc/" + absent.get<std::string>())));
    }
    std::vector<int> predicted;
    for (const auto& row : p) predicted.push_back(fracture::eval::predicted_class(row));
    EXPECT_EQ(nlohmann::json(fracture::eval::confusion_matrix(y, predicted, static_cast<int>(names.size()))), c["confusion"]);
  }
}
