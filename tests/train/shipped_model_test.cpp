// The model shipped in model/ (the built-in default of predict and evaluate).
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "fracture/data/loader.h"
#include "fracture/export/int8_calibration.h"
#include "fracture/models/registry.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/util/paths.h"
#include "helpers.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

// Through LibTorch's modules, network by network (an ensemble's members
// combined as evaluate --ensemble combines them).
float fracture_probability(const std::string& model_path, const std::vector<std::string>& images, size_t which) {
  auto m = train::load_networks(model_path);
  data::LoaderOptions lo;
  lo.preprocess = m.info.preprocess;
  lo.batch_size = 2;
  std::vector<data::Sample> samples;
  for (const auto& p : images) samples.push_back({p});
  std::vector<torch::Tensor> members;
  for (auto& net : m.nets) {
    data::DataLoader loader(samples, lo);
    members.push_back(train::predict_probabilities(*net, loader, torch::kCPU, false));
  }
  return train::combine_probabilities(members)[static_cast<int64_t>(which)][1].item<float>();
}

}  // namespace

TEST(ShippedModel, LoadsAndDescribesItself) {
  const auto m = train::load_networks(util::default_model_path());
  EXPECT_NO_THROW(models::find_model(m.info.architecture));
  EXPECT_EQ(m.info.class_names, (std::vector<std::string>{"non_fractured", "fractured"}));
  EXPECT_GT(m.info.threshold, 0.0);
  EXPECT_LT(m.info.threshold, 1.0);
  EXPECT_GE(m.info.preprocess.size, 224);
  EXPECT_EQ(m.nets.size(), static_cast<size_t>(m.info.members));
  for (const auto& net : m.nets) EXPECT_DOUBLE_EQ(net->cell_pooling(), m.info.cell_pooling);  // pools as trained
}

// `--precision auto` runs int8 only for a model whose calibration passed its
// check. The shipped ensemble carries no int8 calibration: it was made on a
// CPU without VNNI, where the check cannot run (the model card), so auto
// runs it in fp32.
TEST(ShippedModel, AutoRunsItInFp32WithoutAPassedInt8Check) {
  const auto m = train::load_networks(util::default_model_path());
  EXPECT_TRUE(train::int8_ranges_of(m.info, "shipped").empty());
  EXPECT_FALSE(train::int8_check_passed(m.info));
  PredictorOptions o;
  o.model = util::default_model_path();
  Predictor p(o);
  EXPECT_NE(p.engine().find("ensemble of 2 networks"), std::string::npos) << p.engine();
  const bool program = p.engine().find("oneDNN program, fp32 (auto: fp32") != std::string::npos;
  const bool libtorch = p.engine().find("LibTorch") != std::string::npos;
  EXPECT_TRUE(program || libtorch) << p.engine();
}

TEST(ShippedModel, SaneAndDeterministicOnAGeneratedImage) {
  ft::TempDir dir;
  const std::string a = dir / "a.png", b = dir / "b.png";
  cv::imwrite(a, ft::synthetic_xray(900, 1100, 7, true));
  cv::imwrite(b, ft::synthetic_xray(700, 500, 8, false));
  const std::string model = util::default_model_path();
  const float p1 = fracture_probability(model, {a, b}, 0);
  const float p2 = fracture_probability(model, {b, a}, 1);  // fresh load, other batch order
  EXPECT_TRUE(std::isfinite(p1));
  EXPECT_GE(p1, 0.0f);
  EXPECT_LE(p1, 1.0f);
  EXPECT_NEAR(p1, p2, 1e-5);  // batch composition changes oneDNN's blocking, hence not bit-exact
  EXPECT_EQ(p1, fracture_probability(model, {a, b}, 0));
}
