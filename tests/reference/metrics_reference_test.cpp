// Every metric against scikit-learn on random data with ties.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "fracture/eval/metrics.h"

TEST(MetricsReference, EveryMetricMatchesScikitLearn) {
  const char* dir = std::getenv("FRACTURE_REFERENCE_DIR");
  std::ifstream in(std::string(dir ? dir : "reference") + "/metrics_cases.json");
  ASSERT_TRUE(in) << "metrics_cases.json missing: run the reference_tensors test first";
  const auto cases = nlohmann::json::parse(in);
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
