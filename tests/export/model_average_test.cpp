// Weight averaging across runs (train/model_average.h, `fracture average`):
// the written model's weights are the mean of its members', its threshold is
// chosen on the validation images it is given (unreadable ones skipped and
// named), its description names the members and drops an int8 calibration
// made for other weights, and members that are not one model are refused
// with nothing written.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fracture/eval/metrics.h"
#include "fracture/export/int8_calibration.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/export/model_average.h"
#include "data/fixtures.h"
#include "helpers.h"
#include "small_model.h"

using namespace fracture;
namespace ft = fracture::testing;

TEST(ModelAverage, WritesTheMeanWithAThresholdChosenOnValidation) {
  ft::TempDir dir;
  const auto a = ft::save_random_model(dir / "a.safetensors", "efficientnet_lite0", 2, 64, 4, 1);
  const auto b = ft::save_random_model(dir / "b.safetensors", "efficientnet_lite0", 2, 64, 4, 2);
  {  // a calibration made for a's weights must not reach the average
    auto m = train::load_model(a);
    m.info.extra[train::kInt8CalibrationKey] = {{"activation_max", std::vector<float>(49, 1.0f)}};
    train::save_model(a, *m.net, m.info);
  }
  auto val = ft::labelled_images(dir.path, "val", 12, 100);
  val.push_back({dir / "broken.png", 1, "val", "", "", -1, "b"});
  std::ofstream(val.back().path) << "not an image";
  const auto out = dir / "avg.safetensors";

  const auto s = exporter::average_models({a, b}, val, "youden", out);
  EXPECT_EQ(s.models, 2u);
  EXPECT_EQ(s.val_images, 12u);
  ASSERT_EQ(s.unreadable.size(), 1u);
  EXPECT_NE(s.unreadable[0].find("broken.png"), std::string::npos) << s.unreadable[0];
  EXPECT_EQ(s.val_roc_auc_by_source.size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(out + ".unscored"));

  const auto avg = train::load_model(out), ma = train::load_model(a), mb = train::load_model(b);
  const auto wa = models::module_state(*ma.net), wb = models::module_state(*mb.net), w = models::module_state(*avg.net);
  int differing = 0;
  for (const auto& [k, v] : w) {
    if (!v.is_floating_point()) continue;
    EXPECT_TRUE(torch::allclose(v, (wa.at(k) + wb.at(k)) / 2, 1e-5, 1e-6)) << k;
    differing += !torch::equal(v, wa.at(k));
  }
  EXPECT_GT(differing, 0);
  EXPECT_EQ(avg.info.cell_pooling, 4);
  ASSERT_EQ(avg.info.extra["averaged_models"].size(), 2u);
  EXPECT_EQ(avg.info.extra["averaged_models"][0]["file"], "a.safetensors");
  EXPECT_EQ(avg.info.extra["averaged_models"][1]["sha256"], mb.sha256);
  EXPECT_FALSE(avg.info.extra.contains(train::kInt8CalibrationKey));

  // The threshold is youden's on the written model's own fp32 probabilities.
  PredictorOptions o;
  o.model = out;
  o.precision = "fp32";
  Predictor p(o);
  std::vector<int> y;
  std::vector<double> prob;
  const std::vector<data::Sample> readable(val.begin(), val.end() - 1);
  const auto probs = p.probabilities_of(readable, "");
  for (size_t i = 0; i < readable.size(); ++i) {
    y.push_back(readable[i].label);
    prob.push_back(probs[static_cast<int64_t>(i)][1].item<double>());
  }
  EXPECT_NEAR(avg.info.threshold, eval::choose_threshold("youden", y, prob), 1e-6);
  EXPECT_NEAR(s.threshold, avg.info.threshold, 1e-12);
  EXPECT_NE(avg.info.threshold_rule.find("youden on validation, average of 2 models"), std::string::npos);
}

TEST(ModelAverage, RefusesModelsThatAreNotOneModelAndWritesNothing) {
  ft::TempDir dir;
  const auto val = ft::labelled_images(dir.path, "val", 4, 100);
  const auto a = ft::save_random_model(dir / "a.safetensors", "efficientnet_lite0", 2, 64, 0, 1);
  const auto other_size = ft::save_random_model(dir / "b.safetensors", "efficientnet_lite0", 2, 96, 0, 2);
  const auto out = dir / "avg.safetensors";
  try {
    exporter::average_models({a, other_size}, val, "youden", out);
    FAIL() << "averaged models of different input sizes";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("b.safetensors"), std::string::npos) << what;
    EXPECT_NE(what.find("input_size"), std::string::npos) << what;
  }
  EXPECT_THROW(exporter::average_models({a}, val, "youden", out), std::invalid_argument);
  EXPECT_THROW(exporter::average_models({a, a}, {}, "youden", out), std::invalid_argument);
  EXPECT_THROW(exporter::average_models({a, a}, val, "median", out), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(out));
}
