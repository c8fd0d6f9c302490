// Checkpoint averaging: train::average_weights on its own, and `--average K`
// in a training run (the run's model is the mean of the last K epochs'
// snapshots, scored on validation, and survives --resume).
#include <gtest/gtest.h>

#include <filesystem>

#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/trainer.h"
#include "fracture/util/atomic_file.h"
#include "train/fixtures.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

train::ModelInfo resnet_info() { return ft::resnet18_info(); }

}  // namespace

TEST(AverageWeights, IsTheElementwiseMeanAndKeepsDtypes) {
  ft::TempDir dir;
  std::vector<std::string> paths;
  std::vector<models::TensorMap> states;
  for (int i = 0; i < 3; ++i) {
    torch::manual_seed(i);
    auto net = models::find_model("resnet18").build(2);
    paths.push_back(dir / ("m" + std::to_string(i) + ".safetensors"));
    train::save_model(paths.back(), *net, resnet_info());
    states.push_back(models::load_safetensors(paths.back()).tensors);
  }
  const auto avg = train::average_weights(paths);
  ASSERT_EQ(avg.size(), states[0].size());
  for (const auto& [k, v] : avg) {
    EXPECT_EQ(v.scalar_type(), states[0].at(k).scalar_type()) << k;
    if (!v.is_floating_point()) continue;
    const auto mean = (states[0].at(k) + states[1].at(k) + states[2].at(k)) / 3;
    EXPECT_TRUE(torch::allclose(v, mean, 1e-5, 1e-6)) << k;
  }
  // The models really differ (seeded differently), so the mean is none of them.
  int differing = 0;
  for (const auto& [k, v] : avg) differing += v.is_floating_point() && !torch::equal(v, states[0].at(k));
  EXPECT_GT(differing, 0);
}

TEST(AverageWeights, NamesTheFileThatDoesNotFit) {
  ft::TempDir dir;
  auto a = models::find_model("resnet18").build(2);
  auto b = models::find_model("resnet18").build(3);  // another head
  train::save_model(dir / "a.safetensors", *a, resnet_info());
  auto info3 = resnet_info();
  info3.class_names.push_back("other");
  train::save_model(dir / "b.safetensors", *b, info3);
  try {
    train::average_weights({dir / "a.safetensors", dir / "b.safetensors"});
    FAIL() << "averaged models with different heads";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("b.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::average_weights({}), std::invalid_argument);
}

TEST(AverageWeights, TrainingWritesTheMeanOfTheLastEpochsAndResumes) {
  if (!ft::have_lite0())
    GTEST_SKIP() << "Lite0 ImageNet weights missing: run scripts/setup.sh";
  ft::TempDir dir;
  ft::make_square_dataset(dir, 8, 4, 64);
  const data::Dataset d = data::load_dataset(dir.path.string());
  train::TrainOptions o;
  o.out_dir = dir / "a";
  o.image_size = 64;
  o.epochs = 3;
  o.batch_size = 8;
  o.freeze = train::Freeze::parse("last:1");
  o.threads = 2;
  o.average_last = 2;
  const auto a = train::train(d, o);
  // best.safetensors, the model to use, is the mean of epochs 2 and 3.
  ASSERT_EQ(a.model, dir / "a/best.safetensors");
  EXPECT_EQ(a.averaged, "average of epochs 2-3");
  EXPECT_TRUE(std::filesystem::exists(dir / "a/best-epoch.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir / "a/epoch-01.safetensors"));  // only the averaged epochs are kept
  const auto mean = train::average_weights({dir / "a/epoch-02.safetensors", dir / "a/epoch-03.safetensors"});
  const auto saved = train::load_model(a.model);
  for (const auto& [k, v] : models::module_state(*saved.net)) EXPECT_TRUE(torch::equal(v, mean.at(k))) << k;
  EXPECT_GE(a.model_val_auc, 0.0);
  EXPECT_LE(a.model_val_auc, 1.0);
  EXPECT_DOUBLE_EQ(saved.info.threshold, a.threshold);
  EXPECT_NE(saved.info.threshold_rule.find("average of epochs 2-3"), std::string::npos) << saved.info.threshold_rule;
  EXPECT_NE(util::read_file(dir / "a/threshold.json").find("\"best.safetensors\""), std::string::npos);

  // Stopped after one epoch, the run's model so far is its best epoch;
  // resumed to the end, it is the same average as the unbroken run's.
  o.out_dir = dir / "b";
  o.stop_after_epochs = 1;
  const auto b1 = train::train(d, o);
  EXPECT_EQ(b1.model, dir / "b/best-epoch.safetensors");
  EXPECT_FALSE(std::filesystem::exists(dir / "b/best.safetensors"));
  o.stop_after_epochs = 0;
  o.resume = true;
  const auto b = train::train(d, o);
  EXPECT_DOUBLE_EQ(b.model_val_auc, a.model_val_auc);
  EXPECT_DOUBLE_EQ(b.threshold, a.threshold);
  const auto wb = models::load_safetensors(b.model).tensors;
  for (const auto& [k, v] : models::load_safetensors(a.model).tensors) EXPECT_TRUE(torch::equal(v, wb.at(k))) << k;
}
