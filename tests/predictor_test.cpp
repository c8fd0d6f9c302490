// The library's Predictor: files and bytes give the same probabilities, the
// label follows the model's rule (threshold for two classes, arg-max for
// more), bad input is an error naming it, and heat maps explain a class.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "fracture/predictor.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"
#include "small_model.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

std::string make_model(const ft::TempDir& dir, std::vector<std::string> classes, double threshold = 0.5) {
  const std::string path = dir / ("m" + std::to_string(classes.size()) + ".safetensors");
  return ft::save_small_model(path, std::move(classes), threshold, 3);
}

std::vector<std::string> write_images(const ft::TempDir& dir, int n) {
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) {
    paths.push_back(dir / ("img" + std::to_string(i) + (i % 2 ? ".png" : ".jpg")));
    ft::write_image(paths.back(), ft::synthetic_xray(90 + 7 * i, 120, 40 + i, i % 3 == 0));
  }
  return paths;
}

std::vector<Prediction> predict_all(Predictor& p, const std::vector<std::string>& paths) {
  std::vector<Prediction> out;
  p.predict_files(paths, [&](const std::vector<Prediction>& batch) { out.insert(out.end(), batch.begin(), batch.end()); });
  return out;
}

}  // namespace

TEST(Predictor, FilesAndBytesAgreeAndFailuresKeepTheirPlace) {
  ft::TempDir dir;
  PredictorOptions o;
  o.model = make_model(dir, {"normal", "fracture"}, 0.5);
  o.batch_size = 3;
  Predictor predictor(o);
  auto paths = write_images(dir, 5);
  util::write_file_atomic(dir / "broken.jpg", "\xff\xd8 not really a jpeg");
  paths.insert(paths.begin() + 2, dir / "broken.jpg");
  const auto got = predict_all(predictor, paths);
  ASSERT_EQ(got.size(), paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    EXPECT_EQ(got[i].path, paths[i]);
    const auto from_bytes = predictor.predict_bytes(util::read_file(paths[i]), "upload " + std::to_string(i));
    if (i == 2) {  // the broken file: an error naming it, in its place, from files and from bytes
      EXPECT_FALSE(got[i].ok());
      EXPECT_NE(got[i].error.find("broken.jpg"), std::string::npos) << got[i].error;
      EXPECT_FALSE(from_bytes.ok());
      EXPECT_NE(from_bytes.error.find("upload 2"), std::string::npos) << from_bytes.error;
      continue;
    }
    ASSERT_TRUE(got[i].ok()) << got[i].error;
    ASSERT_EQ(got[i].probabilities.size(), 2u);
    EXPECT_NEAR(got[i].probabilities[0] + got[i].probabilities[1], 1.0, 1e-6);
    EXPECT_DOUBLE_EQ(got[i].probability, got[i].probabilities[1]);
    ASSERT_TRUE(got[i].threshold.has_value());
    EXPECT_EQ(got[i].label, got[i].probability >= 0.5 ? "fracture" : "normal");
    ASSERT_TRUE(from_bytes.ok()) << from_bytes.error;
    EXPECT_NEAR(from_bytes.probability, got[i].probability, 1e-5) << paths[i];
    EXPECT_GT(got[i].milliseconds, 0.0);  // timings come with every scored image
    EXPECT_GT(from_bytes.milliseconds, 0.0);
  }
  EXPECT_FALSE(predictor.predict_bytes("", "empty").ok());
}

// A model trained with --standardise is scored with it: one radiograph at two
// exposures gets the same probability; the same network without it does not.
TEST(Predictor, AppliesTheModelsPerImageStandardisation) {
  ft::TempDir dir;
  const cv::Mat img = ft::synthetic_xray(100, 120, 40, true);
  cv::Mat other;
  img.convertTo(other, -1, 0.5, 100);  // lower contrast, brighter
  ft::write_image(dir / "a.png", img);
  ft::write_image(dir / "b.png", other);
  // |p(a) - p(b)| under the same random network, saved with or without it.
  auto gap = [&](bool standardise) {
    PredictorOptions o;
    o.model = ft::save_small_model(dir / (standardise ? "s.safetensors" : "p.safetensors"), {"normal", "fracture"},
                                   0.5, 3, standardise);
    Predictor predictor(o);
    EXPECT_EQ(predictor.info().preprocess.standardise, standardise);
    const auto p = predict_all(predictor, {dir / "a.png", dir / "b.png"});
    EXPECT_TRUE(p.at(0).ok() && p.at(1).ok()) << p.at(0).error << p.at(1).error;
    return std::abs(p.at(0).probability - p.at(1).probability);
  };
  const double with = gap(true), without = gap(false);
  EXPECT_LT(with * 10, without);  // measured: 0.0007 against 0.0101
}

TEST(Predictor, TwoClassLabelFollowsTheThresholdAndMoreClassesTheArgMax) {
  ft::TempDir dir;
  PredictorOptions o;
  o.model = make_model(dir, {"normal", "fracture"}, 0.2);
  const Predictor binary(o);
  auto p = binary.decide({0.7, 0.3});  // below 0.5, above the model's threshold 0.2
  EXPECT_EQ(p.label, "fracture");
  EXPECT_DOUBLE_EQ(p.probability, 0.3);
  EXPECT_DOUBLE_EQ(*p.threshold, 0.2);
  EXPECT_EQ(binary.decide({0.9, 0.1}).label, "normal");
  EXPECT_FALSE(binary.decide({NAN, NAN}).ok());

  o.model = make_model(dir, {"comminuted", "greenstick", "oblique"});
  const Predictor types(o);
  p = types.decide({0.2, 0.5, 0.3});
  EXPECT_EQ(p.label, "greenstick");
  EXPECT_DOUBLE_EQ(p.probability, 0.5);
  EXPECT_FALSE(p.threshold.has_value());
  EXPECT_EQ(types.decide({0.1, 0.2, 0.7}).label, "oblique");  // not the last class by rule: the largest
  EXPECT_EQ(types.decide({0.6, 0.2, 0.2}).label, "comminuted");
  EXPECT_EQ(types.heat_map_class(types.decide({0.1, 0.2, 0.7})), 2);
  EXPECT_EQ(binary.heat_map_class(binary.decide({0.9, 0.1})), 1);  // the fracture evidence, whatever the label
}

TEST(Predictor, ConcurrentCallersGetTheSameAnswers) {
  ft::TempDir dir;
  PredictorOptions o;
  o.model = make_model(dir, {"a", "b", "c"});
  Predictor predictor(o);
  const auto paths = write_images(dir, 4);
  std::vector<double> alone;
  for (const auto& path : paths) alone.push_back(predictor.predict_bytes(util::read_file(path), path).probability);
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> seen(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (const auto& path : paths) seen[t].push_back(predictor.predict_bytes(util::read_file(path), path).probability);
    });
  for (auto& t : threads) t.join();
  for (const auto& s : seen)
    for (size_t i = 0; i < paths.size(); ++i) EXPECT_NEAR(s[i], alone[i], 1e-6);
}

TEST(Predictor, HeatMapsExplainTheAskedClassAndNameBadFiles) {
  ft::TempDir dir;
  PredictorOptions o;
  o.model = make_model(dir, {"a", "b", "c"});
  Predictor predictor(o);
  const auto paths = write_images(dir, 1);
  const auto map = predictor.heat_map(paths[0], 2);
  EXPECT_EQ(map.target_class, 2);
  EXPECT_EQ(map.overlay.type(), CV_8UC3);
  EXPECT_EQ(map.overlay.cols, 90);  // the picture's own size (below 1024 px)
  EXPECT_GT(map.peak_x, 0.0);
  EXPECT_LT(map.peak_x, 1.0);
  // Asked for from inside predict_files' callback, as `predict --cam` does (no deadlock).
  int from_callback = -1;
  predictor.predict_files(paths, [&](const std::vector<Prediction>& batch) {
    from_callback = predictor.heat_map(batch[0].path, predictor.heat_map_class(batch[0])).target_class;
  });
  EXPECT_EQ(from_callback, predictor.heat_map_class(predictor.predict_bytes(util::read_file(paths[0]), "x")));
  const auto same = predictor.heat_map_of_bytes(util::read_file(paths[0]), "upload", 2);
  EXPECT_DOUBLE_EQ(same.peak_x, map.peak_x);
  EXPECT_DOUBLE_EQ(same.peak_y, map.peak_y);
  try {
    predictor.heat_map(dir / "missing.png", 0);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos) << e.what();
  }
}

TEST(Predictor, AMissingModelIsNamed) {
  PredictorOptions o;
  o.model = "/nonexistent/model.safetensors";
  try {
    Predictor p(o);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.safetensors"), std::string::npos) << e.what();
  }
}
