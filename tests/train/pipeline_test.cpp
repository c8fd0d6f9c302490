// Train -> evaluate -> predict end to end on generated images, with the real
// ImageNet Lite0 backbone (fetched by scripts/setup.sh).
#include <gtest/gtest.h>

#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "fracture/data/loader.h"
#include "fracture/eval/metrics.h"
#include "fracture/eval/report.h"
#include "fracture/explain/gradcam.h"
#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/train/trainer.h"
#include "fracture/util/atomic_file.h"
#include "train/fixtures.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

train::TrainOptions quick_options(const std::string& out, int image_size = 160, int epochs = 8,
                                  const std::string& freeze = "head") {
  train::TrainOptions o;
  o.out_dir = out;
  o.image_size = image_size;
  o.epochs = epochs;
  o.batch_size = 8;
  o.lr = 3e-3;
  o.warmup_epochs = 0.5;
  o.seed = 5;
  o.threads = 2;
  o.freeze = train::Freeze::parse(freeze);
  o.mixup = 0;  // the tests below check learning on tiny data; mixup has its own test
  o.average_last = 0;  // the best epoch is the model; averaging has its own tests (average_test.cpp)
  o.cell_pooling = 0;  // average pooling; cell pooling and boxes have their own tests (box_supervision_test.cpp)
  o.box_loss = 0;
  return o;
}

}  // namespace

class Pipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ft::have_lite0()) << "Lite0 ImageNet weights missing: run scripts/setup.sh";
  }
};

TEST_F(Pipeline, TrainsEvaluatesAndExplains) {
  ft::TempDir dir;
  const auto images = ft::make_square_dataset(dir, 24, 10);
  const data::Dataset d = data::load_dataset(dir.path.string());
  ASSERT_EQ(d.class_names, (std::vector<std::string>{"normal", "fracture"}));

  const auto r = train::train(d, quick_options(dir / "run"));
  ASSERT_GT(r.best_epoch, 0);
  EXPECT_EQ(r.history.size(), 8u);
  EXPECT_GT(r.best_val_auc, 0.95);
  for (const char* f : {"best.safetensors", "last.safetensors", "metrics.jsonl", "threshold.json", "train_state.json"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("run/" + std::string(f)))) << f;

  // Evaluate the saved model on the untouched test split.
  auto m = train::load_model(r.model);
  EXPECT_EQ(m.info.preprocess.size, 160);
  EXPECT_DOUBLE_EQ(m.info.threshold, r.threshold);
  data::LoaderOptions lo;
  lo.preprocess = m.info.preprocess;
  data::DataLoader loader(d.subset("test"), lo);
  auto probs = train::predict_probabilities(*m.net, loader, torch::kCPU);
  eval::EvaluationInput in;
  in.samples = d.subset("test");
  for (int64_t i = 0; i < probs.size(0); ++i) in.probabilities.push_back(probs[i][1].item<float>());
  in.threshold = m.info.threshold;
  in.split = "test";
  eval::EvaluationOptions eo;
  eo.out_dir = dir / "eval";
  eo.bootstrap = 200;
  eo.training_metrics = dir / "run/metrics.jsonl";
  const auto j = eval::write_evaluation(in, eo);
  EXPECT_GT(j["metrics"]["roc_auc"]["value"].get<double>(), 0.95);
  for (const char* f : {"metrics.json", "report.md", "roc.svg", "pr.svg", "calibration.svg", "training_curves.svg", "predictions.csv"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("eval/" + std::string(f)))) << f;

  // Grad-CAM: the fracture score's heat map peaks on the square.
  int hits = 0, tried = 0;
  for (const auto& img : images) {
    if (img.label != 1 || img.path.find("/test/") == std::string::npos) continue;
    ++tried;
    data::DataLoader one({data::Sample{img.path, 1}}, lo);
    auto x = one.load_one(0).unsqueeze(0);
    const cv::Mat cam = explain::grad_cam(*m.net, x, 1);
    ASSERT_EQ(cam.size(), cv::Size(160, 160));
    // The map concentrates around the square: its peak lies within 1.5
    // feature-map cells (stride 32) of the square's centre, and it is on
    // average at least twice as hot in a 64x64 window on the square as elsewhere.
    cv::Point peak;
    cv::minMaxLoc(cam, nullptr, nullptr, nullptr, &peak);
    const cv::Rect window = cv::Rect(img.centre.x - 32, img.centre.y - 32, 64, 64) & cv::Rect(0, 0, 160, 160);
    cv::Mat outside_mask(cam.size(), CV_8U, cv::Scalar(255));
    outside_mask(window).setTo(0);
    const double inside = cv::mean(cam(window))[0], outside = cv::mean(cam, outside_mask)[0];
    if (cv::norm(peak - img.centre) <= 48 && inside >= 2 * outside) ++hits;
    if (const char* keep = std::getenv("FRACTURE_TEST_CAM_DIR")) {  // to look at them
      std::filesystem::create_directories(keep);
      cv::Mat pic = cv::imread(img.path, cv::IMREAD_GRAYSCALE);
      cv::imwrite(std::string(keep) + "/cam" + std::to_string(tried) + ".png", explain::overlay_heatmap(pic, cam));
    }
  }
  EXPECT_GE(hits, tried * 8 / 10) << hits << " of " << tried << " heat maps peak on the square";
}

TEST_F(Pipeline, SeededRunsReproduceAndResumeContinuesExactly) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 12, 6, 96);
  const data::Dataset d = data::load_dataset(dir.path.string());
  auto o = quick_options(dir / "a", 96, 4, "last:1");  // a trainable stage too, from cached features
  const auto a = train::train(d, o);
  o.out_dir = dir / "b";
  const auto b = train::train(d, o);
  ASSERT_EQ(a.history.size(), 4u);
  for (size_t i = 0; i < a.history.size(); ++i) {
    EXPECT_DOUBLE_EQ(a.history[i].train_loss, b.history[i].train_loss) << i;
    EXPECT_DOUBLE_EQ(a.history[i].val_auc, b.history[i].val_auc) << i;
  }
  // Interrupted after 2 epochs, then resumed: the same as the unbroken run.
  o.out_dir = dir / "c";
  o.stop_after_epochs = 2;
  const auto c1 = train::train(d, o);
  EXPECT_EQ(c1.history.size(), 2u);
  o.stop_after_epochs = 0;
  o.resume = true;
  const auto c2 = train::train(d, o);
  ASSERT_EQ(c2.history.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(c2.history[i].train_loss, a.history[i].train_loss) << i;
  EXPECT_DOUBLE_EQ(c2.threshold, a.threshold);
  EXPECT_DOUBLE_EQ(train::load_model(dir / "c/best.safetensors").info.threshold, a.threshold);
  const auto wa = models::load_safetensors(dir / "a/last.safetensors").tensors;
  const auto wc = models::load_safetensors(dir / "c/last.safetensors").tensors;
  for (const auto& [k, v] : wa) EXPECT_TRUE(torch::equal(v, wc.at(k))) << k;
}

TEST_F(Pipeline, FullFineTuningWithAugmentationRuns) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 6, 3, 64);
  const data::Dataset d = data::load_dataset(dir.path.string());
  auto o = quick_options(dir / "full", 64, 1, "full");
  o.balance = train::Balance::Sampler;
  o.ema_decay = 0.9;
  o.clip_grad_norm = 1.0;
  o.optimizer = train::Optimizer::Sgd;
  const auto r = train::train(d, o);
  EXPECT_EQ(r.history.size(), 1u);
  EXPECT_TRUE(std::isfinite(r.history[0].train_loss));
  EXPECT_TRUE(std::filesystem::exists(dir / "full/state/epoch-01.raw.safetensors"));  // EMA keeps the raw weights too
}

TEST(Checkpoint, RefusesNonModelsAndRoundTripsInfo) {
  ft::TempDir dir;
  auto net = models::find_model("resnet18").build(2);
  train::ModelInfo info;
  info.architecture = "resnet18";
  info.class_names = {"normal", "fracture"};
  info.preprocess.size = 96;
  info.preprocess.resize = data::ResizeMode::Letterbox;
  info.threshold = 0.37;
  train::save_model(dir / "m.safetensors", *net, info);
  const auto back = train::load_model(dir / "m.safetensors");
  EXPECT_EQ(back.info.class_names, info.class_names);
  EXPECT_EQ(back.info.preprocess.resize, data::ResizeMode::Letterbox);
  EXPECT_DOUBLE_EQ(back.info.threshold, 0.37);
  models::save_safetensors(dir / "plain.safetensors", models::module_state(*net));
  try {
    train::load_model(dir / "plain.safetensors");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("plain.safetensors"), std::string::npos);
  }
}

// --standardise reaches the model file, so every front end scores with it.
TEST_F(Pipeline, StandardisedRunRecordsItInTheModel) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 8, 4, 64);
  const data::Dataset d = data::load_dataset(dir.path.string());
  auto o = quick_options(dir / "run", 64, 1, "last:2");
  o.standardise = true;
  const auto r = train::train(d, o);
  EXPECT_TRUE(train::load_model(r.model).info.preprocess.standardise);
}

TEST_F(Pipeline, AugmentedViewsChangeWhatTheCachedRunSees) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 8, 4, 64);
  const data::Dataset d = data::load_dataset(dir.path.string());
  auto o = quick_options(dir / "plain", 64, 2, "last:2");
  const auto plain = train::train(d, o);
  o.out_dir = dir / "views";
  o.cache_views = 3;
  const auto views = train::train(d, o);
  ASSERT_EQ(views.history.size(), 2u);
  EXPECT_TRUE(std::isfinite(views.history[1].train_loss));
  EXPECT_NE(plain.history[1].train_loss, views.history[1].train_loss);
  o.out_dir = dir / "views2";
  EXPECT_DOUBLE_EQ(train::train(d, o).history[1].train_loss, views.history[1].train_loss);  // still seeded
}

// Feature-map augmentation and mixup change what a cached run trains on,
// and stay reproducible for a seed.
TEST_F(Pipeline, FeatureAugmentAndMixupAreSeededRegularisers) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 8, 4, 64);
  const data::Dataset d = data::load_dataset(dir.path.string());
  auto o = quick_options(dir / "plain", 64, 2, "last:2");
  const double plain = train::train(d, o).history[1].train_loss;
  for (const char* lever : {"feature_augment", "mixup"}) {
    auto v = o;
    if (std::string(lever) == "mixup") v.mixup = 0.4; else v.feature_augment = true;
    v.out_dir = dir / (std::string(lever) + "1");
    const double first = train::train(d, v).history[1].train_loss;
    v.out_dir = dir / (std::string(lever) + "2");
    const double again = train::train(d, v).history[1].train_loss;
    EXPECT_TRUE(std::isfinite(first)) << lever;
    EXPECT_NE(first, plain) << lever;
    EXPECT_DOUBLE_EQ(first, again) << lever;
  }
}
