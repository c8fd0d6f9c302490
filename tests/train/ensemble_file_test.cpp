// Ensembles as one model file (train::save_ensemble, `fracture ensemble`):
// the file reloads as its members; the Predictor scores it as evaluate
// --ensemble combines its members (the normalised geometric mean of their
// probabilities, for two classes the mean log-odds), explains it with one
// heat map over all members, and plays the pointing game with their mean
// cell map; the threshold is chosen on the ensemble's own validation
// probabilities; what takes one network (training, averaging) refuses an
// ensemble naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fracture/eval/metrics.h"
#include "fracture/explain/gradcam.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/export/model_average.h"
#include "data/fixtures.h"
#include "helpers.h"
#include "small_model.h"

using namespace fracture;
namespace ft = fracture::testing;

namespace {


Predictor fp32(const std::string& path) {
  PredictorOptions o;
  o.model = path;
  o.precision = "fp32";
  return Predictor(o);
}

// The two random Lite0 members and their ensemble, written by `ensemble_models`.
struct Pair {
  ft::TempDir dir;
  std::string a, b, out;
  std::vector<data::Sample> val;
  exporter::AverageSummary summary;
  explicit Pair(int classes = 2) {
    a = ft::save_random_model(dir / "a.safetensors", "efficientnet_lite0", classes, 64, 0, 1);
    b = ft::save_random_model(dir / "b.safetensors", "efficientnet_lite0", classes, 64, 0, 2);
    val = ft::labelled_images(dir.path, "val", 12, 300);
    out = dir / "ensemble.safetensors";
    summary = exporter::ensemble_models({a, b}, val, "youden", out);
  }
};

}  // namespace

TEST(EnsembleFile, TheFileReloadsAsItsMembers) {
  Pair p;
  const auto e = train::load_networks(p.out);
  ASSERT_EQ(e.nets.size(), 2u);
  EXPECT_EQ(e.info.members, 2);
  const auto ma = train::load_model(p.a), mb = train::load_model(p.b);
  const auto w0 = models::module_state(*e.nets[0]), w1 = models::module_state(*e.nets[1]);
  const auto wa = models::module_state(*ma.net), wb = models::module_state(*mb.net);
  ASSERT_EQ(w0.size(), wa.size());
  for (const auto& [k, v] : wa) {
    EXPECT_TRUE(torch::equal(w0.at(k), v)) << k;
    EXPECT_TRUE(torch::equal(w1.at(k), wb.at(k))) << k;
  }
  ASSERT_EQ(e.info.extra["ensemble_members"].size(), 2u);
  EXPECT_EQ(e.info.extra["ensemble_members"][1]["file"], "b.safetensors");
  EXPECT_EQ(e.info.extra["ensemble_members"][1]["sha256"], mb.sha256);
  EXPECT_FALSE(std::filesystem::exists(p.out + ".unscored"));
  // A model of one network is still one network, and says nothing of members.
  EXPECT_EQ(train::load_networks(p.a).nets.size(), 1u);
  EXPECT_FALSE(ma.info.to_json().contains("members"));
}

TEST(EnsembleFile, ThePredictorCombinesItsMembersAsEvaluateDoes) {
  Pair p;
  auto ensemble = fp32(p.out);
  auto a = fp32(p.a), b = fp32(p.b);
  EXPECT_NE(ensemble.engine().find("ensemble of 2 networks"), std::string::npos) << ensemble.engine();
  const auto pe = ensemble.probabilities_of(p.val, "");
  const auto expected = train::combine_probabilities({a.probabilities_of(p.val, ""), b.probabilities_of(p.val, "")});
  EXPECT_TRUE(torch::allclose(pe, expected.to(torch::kDouble), 1e-5, 1e-6)) << pe << expected;
  // Not simply one member's: the members disagree on these images.
  EXPECT_FALSE(torch::allclose(pe, a.probabilities_of(p.val, ""), 1e-3, 1e-4));

  // Bytes score as files do, and the ensemble's decision uses its own threshold.
  std::ifstream in(p.val[3].path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto one = ensemble.predict_bytes(bytes, "x.png");
  ASSERT_TRUE(one.ok()) << one.error;
  EXPECT_NEAR(one.probability, pe[3][1].item<double>(), 1e-5);
  EXPECT_NEAR(*one.threshold, p.summary.threshold, 1e-12);
}

TEST(EnsembleFile, ItsThresholdIsChosenOnItsOwnValidationProbabilities) {
  Pair p;
  auto ensemble = fp32(p.out);
  const auto probs = ensemble.probabilities_of(p.val, "");
  std::vector<int> y;
  std::vector<double> prob;
  for (size_t i = 0; i < p.val.size(); ++i) {
    y.push_back(p.val[i].label);
    prob.push_back(probs[static_cast<int64_t>(i)][1].item<double>());
  }
  EXPECT_NEAR(ensemble.info().threshold, eval::choose_threshold("youden", y, prob), 1e-6);
  EXPECT_EQ(p.summary.models, 2u);
  EXPECT_EQ(p.summary.val_images, 12u);
  EXPECT_NE(ensemble.info().threshold_rule.find("youden on validation, ensemble of 2 models"), std::string::npos);
}

TEST(EnsembleFile, MoreClassesCombineTheirProbabilitiesToo) {
  Pair p(3);
  auto ensemble = fp32(p.out);
  auto a = fp32(p.a), b = fp32(p.b);
  const auto pe = ensemble.probabilities_of(p.val, "");
  const auto expected = train::combine_probabilities({a.probabilities_of(p.val, ""), b.probabilities_of(p.val, "")});
  EXPECT_TRUE(torch::allclose(pe, expected.to(torch::kDouble), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(pe.sum(1), torch::ones({pe.size(0)}, torch::kDouble), 1e-6, 1e-6));  // float sums
}

// Two copies of one network are that network: its probabilities, its heat
// map (each copy carries half the gradient of a score that is the same).
TEST(EnsembleFile, TwoCopiesOfANetworkExplainAndScoreAsTheNetwork) {
  ft::TempDir dir;
  const auto a = ft::save_random_model(dir / "a.safetensors", "efficientnet_lite0", 2, 64, 0, 5);
  const auto val = ft::labelled_images(dir.path, "val", 6, 300);
  const auto out = dir / "twice.safetensors";
  exporter::ensemble_models({a, a}, val, "youden", out);
  auto twice = fp32(out);
  auto once = fp32(a);
  EXPECT_TRUE(torch::allclose(twice.probabilities_of(val, ""), once.probabilities_of(val, ""), 1e-5, 1e-6));

  const auto h2 = twice.heat_map(val[1].path, 1), h1 = once.heat_map(val[1].path, 1);
  ASSERT_EQ(h2.overlay.size(), h1.overlay.size());
  EXPECT_NEAR(h2.peak_x, h1.peak_x, 1e-9);
  EXPECT_NEAR(h2.peak_y, h1.peak_y, 1e-9);
  const auto m = train::load_model(a);
  const auto x = torch::randn({1, 3, 64, 64});
  const cv::Mat single = explain::grad_cam(*m.net, x, 1);
  const cv::Mat pair = explain::grad_cam(std::vector<models::Classifier>{m.net, m.net}, x, 1);
  EXPECT_LT(cv::norm(single, pair, cv::NORM_INF), 1e-4);
  ft::TempDir data;
  ft::make_yolo(data, 6, 64);
  const auto d = data::load_dataset(data.path.string());
  EXPECT_EQ(twice.pointing_game(d.samples), once.pointing_game(d.samples));
}

TEST(EnsembleFile, HeatMapsAndThePointingGameRunOverAllMembers) {
  Pair p;
  auto ensemble = fp32(p.out);
  const auto h = ensemble.heat_map(p.val[0].path, 1);
  EXPECT_FALSE(h.overlay.empty());
  EXPECT_GE(h.peak_x, 0);
  EXPECT_LE(h.peak_x, 1);
  // The pointing game needs boxes: a YOLO-layout set has them. The members'
  // mean cell map picks its own top cells, and plays every boxed image.
  ft::TempDir data;
  ft::make_yolo(data, 6, 64);
  const auto d = data::load_dataset(data.path.string());
  const auto game = ensemble.pointing_game(d.samples), alone = fp32(p.a).pointing_game(d.samples);
  ASSERT_FALSE(game.is_null());
  EXPECT_EQ(game["images"], alone["images"]);
  EXPECT_GT(game["images"].get<int>(), 0);
}

TEST(EnsembleFile, WhatTakesOneNetworkRefusesItNamingTheFile) {
  Pair p;
  try {
    train::load_model(p.out);
    FAIL() << "load_model took an ensemble";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("ensemble.safetensors: an ensemble of 2 networks"), std::string::npos) << what;
  }
  PredictorOptions o;
  o.model = p.out;
  o.precision = "int8";
  try {
    Predictor refused(o);
    FAIL() << "int8 ran an ensemble";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    // Where this CPU has no int8 program the refusal says that instead; either names the way out.
    EXPECT_TRUE(what.find("has no int8 calibration: make a calibrated copy") != std::string::npos ||
                what.find("needs the oneDNN program") != std::string::npos)
        << what;
  }
  // An ensemble is not a member, and nothing is written.
  const auto nested = p.dir / "nested.safetensors";
  EXPECT_THROW(exporter::ensemble_models({p.out, p.a}, p.val, "youden", nested), std::runtime_error);
  EXPECT_THROW(exporter::ensemble_models({p.a}, p.val, "youden", nested), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(nested));
}

TEST(EnsembleFile, AFileWhoseWeightsDoNotMatchItsMembersIsRefused) {
  Pair p;
  auto contents = models::load_safetensors(p.out);
  auto description = nlohmann::json::parse(contents.metadata.at("fracture"));
  const auto bad = p.dir / "bad.safetensors";

  description["members"] = 3;  // a member with no weights
  models::save_safetensors(bad, contents.tensors, {{"fracture", description.dump()}});
  try {
    train::load_networks(bad);
    FAIL() << "loaded a member without weights";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.safetensors (member 2)"), std::string::npos) << e.what();
  }
  description["members"] = 1;  // the members' prefixed weights fit no single network
  models::save_safetensors(bad, contents.tensors, {{"fracture", description.dump()}});
  EXPECT_THROW(train::load_networks(bad), std::runtime_error);
  description["members"] = 0;
  models::save_safetensors(bad, contents.tensors, {{"fracture", description.dump()}});
  EXPECT_THROW(train::load_networks(bad), std::runtime_error);
  auto extra = contents.tensors;
  extra["members.7.stray"] = torch::zeros({2});
  description["members"] = 2;
  models::save_safetensors(bad, extra, {{"fracture", description.dump()}});
  try {
    train::load_networks(bad);
    FAIL() << "loaded a weight of no member";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("members.7.stray"), std::string::npos) << e.what();
  }
}
