// EfficientNet-Lite's body as one oneDNN program (models/onednn_body.h): the
// same features as LibTorch's modules (within float rounding, 1e-4 of the
// largest) for odd and non-square sizes, several batch sizes, again and again
// (its buffers are shared and the residual adds write in place); bf16 close
// to fp32 where the CPU runs it, and refused with a reason where it does not;
// int8 likewise, with one calibrated range per quantised activation;
// the networks it cannot fuse are named; and the Predictor gives the same
// probabilities through it as through LibTorch.
#include <gtest/gtest.h>

#include "fracture/models/efficientnet.h"
#include "fracture/models/onednn_body.h"
#include "fracture/models/registry.h"
#include "fracture/predictor.h"
#include "fracture/train/inference.h"
#include "helpers.h"
#include "models/int8_simulation.h"
#include "small_model.h"

using namespace fracture;
namespace ft = fracture::testing;

namespace {

std::shared_ptr<models::ClassifierImpl> random_lite0(int size) {
  torch::manual_seed(11);
  auto net = models::find_model("efficientnet_lite0").build(2);
  ft::randomise(*net, size);
  net->eval();
  return net;
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-6, b.abs().max().item<double>());
}

}  // namespace

#ifdef FRACTURE_WITH_ONEDNN

TEST(OneDnnBody, SameFeaturesAsLibTorchForAnyShapeAndAgain) {
  auto net = random_lite0(64);
  models::OneDnnBody body(*net, models::Precision::fp32);
  torch::NoGradGuard no_grad;
  // 97 x 130: odd and non-square, so TF "SAME" padding puts its extra pixel on one side.
  for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 3, 64, 64}, {3, 3, 97, 130}, {2, 3, 64, 64}}) {
    const auto x = torch::randn(shape);
    const auto expected = net->forward_features(x);
    for (int pass = 0; pass < 2; ++pass) {
      const auto got = body.features(x);
      ASSERT_EQ(got.sizes(), expected.sizes());
      EXPECT_LT(relative_difference(got, expected), 1e-4) << "shape " << x.sizes() << ", pass " << pass;
    }
  }
  // Another input of a shape already built: nothing of the last one is left in the buffers.
  const auto y = torch::randn({1, 3, 64, 64});
  EXPECT_LT(relative_difference(body.features(y), net->forward_features(y)), 1e-4);
}

TEST(OneDnnBody, ReadsFoldedChannelsLastWeightsAsPredictPreparesThem) {
  auto net = random_lite0(64);
  const auto x = torch::randn({2, 3, 80, 80});
  torch::NoGradGuard no_grad;
  const auto expected = net->forward_features(x);
  train::prepare_for_inference(*net, torch::kCPU);  // BatchNorm folded, channels-last weights
  models::OneDnnBody body(*net, models::Precision::fp32);
  EXPECT_LT(relative_difference(body.features(x), expected), 1e-4);
}

TEST(OneDnnBody, Bf16IsCloseToFp32WhereTheCpuRunsItAndRefusedWhereItDoesNot) {
  auto net = random_lite0(64);
  const std::string why = models::onednn_body_unsupported(*net, models::Precision::bf16);
  if (!why.empty()) {  // an AVX2-only CPU: a clear refusal, never a slow emulation
    EXPECT_NE(why.find("AVX512-BF16 or AMX"), std::string::npos) << why;
    EXPECT_THROW(models::OneDnnBody(*net, models::Precision::bf16), std::invalid_argument);
    return;
  }
  models::OneDnnBody body(*net, models::Precision::bf16);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 64, 64});
  const auto expected = net->forward_features(x);
  const auto got = body.features(x);
  // bf16 keeps 8 bits of mantissa: about 0.4% a rounding, through 50 layers.
  const double d = relative_difference(got, expected);
  EXPECT_LT(d, 0.1);
  EXPECT_GT(d, 1e-6);  // it really ran in bf16
  const auto p_fp32 = torch::softmax(net->forward_head(expected), 1);
  const auto p_bf16 = torch::softmax(net->forward_head(got), 1);
  EXPECT_LT((p_fp32 - p_bf16).abs().max().item<double>(), 0.05);
}

TEST(OneDnnBody, Int8IsCloseToFp32WhereTheCpuRunsItAndRefusedWhereItDoesNot) {
  auto net = random_lite0(64);
  torch::manual_seed(3);
  // Calibrated on other images than it then runs on, as in use.
  const auto ranges = models::int8_activation_ranges(*net, torch::randn({8, 3, 64, 64}));
  const std::string why = models::onednn_body_unsupported(*net, models::Precision::int8);
  if (!why.empty()) {  // no VNNI: a clear refusal
    EXPECT_NE(why.find("VNNI"), std::string::npos) << why;
    EXPECT_THROW(models::OneDnnBody(*net, models::Precision::int8, ranges), std::invalid_argument);
    return;
  }
  EXPECT_THROW(models::OneDnnBody(*net, models::Precision::int8), std::invalid_argument);  // no ranges
  models::OneDnnBody body(*net, models::Precision::int8, ranges);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 64, 64});
  const auto expected = net->forward_features(x);
  const auto got = body.features(x);
  const auto simulated = ft::simulate_int8_body(dynamic_cast<const models::EfficientNetImpl&>(*net), x, ranges);
  auto norm_difference = [](const torch::Tensor& a, const torch::Tensor& b) {
    return ((a - b).norm() / b.norm()).item<double>();
  };
  // Measured on the AMD EPYC (AVX-512 VNNI and BF16), with no cap and under
  // the AVX512_CORE_VNNI and AVX512_CORE_BF16 caps: 0, the program is the
  // rule to the bit (issue 37). On the Xeon (AMX), against an earlier,
  // float-rounded version of the rule: the first 7 blocks within 1e-7, then
  // values one grid step apart (a tie rounded the other way) growing to 3%
  // by the head, against 12% from fp32.
  const double to_simulation = norm_difference(got, simulated), to_fp32 = norm_difference(got, expected);
  EXPECT_LT(to_simulation, 0.06) << "against fp32: " << to_fp32;
  EXPECT_GT(to_fp32, 2 * to_simulation);  // it really ran in int8, and as intended
  EXPECT_LT(to_fp32, 0.25);
  // Ranges that do not fit the network are refused.
  EXPECT_THROW(models::OneDnnBody(*net, models::Precision::int8, std::vector<float>(ranges.begin(), ranges.end() - 1)),
               std::invalid_argument);
  auto negative = ranges;
  negative[3] = -1;
  EXPECT_THROW(models::OneDnnBody(*net, models::Precision::int8, negative), std::invalid_argument);
}

#else

TEST(OneDnnBody, AbsentFromThisBuildAndSaysSo) {
  auto net = random_lite0(64);
  EXPECT_NE(models::onednn_body_unsupported(*net, models::Precision::fp32).find("no oneDNN"), std::string::npos);
}

#endif

TEST(OneDnnBody, NamesTheNetworksItCannotFuse) {
  for (const auto& [arch, reason] : std::vector<std::pair<std::string, std::string>>{
           {"efficientnet_b0", "squeeze-excitation"}, {"resnet18", "only EfficientNets"}}) {
    auto net = models::find_model(arch).build(2);
    const std::string why = models::onednn_body_unsupported(*net, models::Precision::fp32);
    EXPECT_NE(why.find(reason), std::string::npos) << arch << ": " << why;
    EXPECT_THROW(models::OneDnnBody(*net, models::Precision::fp32), std::invalid_argument) << arch;
  }
  EXPECT_THROW(models::parse_precision("fp16"), std::invalid_argument);
}

// One range per activation the int8 program quantises, in its order: the
// input, the stem, each block's expand (where it has one), depthwise and
// output; ReLU6's at most 6; a percentile's at most the maximum's.
TEST(OneDnnBody, Int8RangesCoverEveryQuantisedActivation) {
  auto net = random_lite0(64);
  size_t expected = 2;
  for (const auto& stage : dynamic_cast<models::EfficientNetImpl&>(*net).stages())
    for (const auto& block : stage) expected += block->has_expand() ? 3 : 2;
  EXPECT_EQ(expected, 49u);  // EfficientNet-Lite0
  const auto x = torch::randn({4, 3, 64, 64});
  const auto largest = models::int8_activation_ranges(*net, x);
  ASSERT_EQ(largest.size(), expected);
  EXPECT_FLOAT_EQ(largest[0], x.abs().max().item<float>());
  EXPECT_LE(largest[1], 6.f);  // the stem's ReLU6
  // Batch by batch: the largest of each batch's.
  const auto halves = models::int8_activation_ranges(*net, x.slice(0, 2, 4), models::int8_activation_ranges(*net, x.slice(0, 0, 2)));
  for (size_t i = 0; i < expected; ++i) EXPECT_NEAR(halves[i], largest[i], 1e-4 * largest[i]) << i;
  const auto percentile = models::int8_activation_ranges(*net, x, {}, 99.0);
  for (size_t i = 0; i < expected; ++i) {
    EXPECT_LE(percentile[i], largest[i]) << i;
    EXPECT_GT(percentile[i], 0.f) << i;
  }
  EXPECT_LT(percentile[0], largest[0]);
}

TEST(OneDnnBody, PredictorGivesTheSameProbabilitiesThroughItAsThroughLibTorch) {
  ft::TempDir dir;
  PredictorOptions fused, plain;
  fused.model = plain.model = ft::save_random_model(dir / "lite.safetensors", "efficientnet_lite0", 2, 70, 2.0, 5);
  fused.device = plain.device = "cpu";
  plain.fused = false;
  Predictor a(fused), b(plain);
#ifdef FRACTURE_WITH_ONEDNN
  EXPECT_EQ(a.engine().rfind("oneDNN program, fp32", 0), 0u) << a.engine();  // auto: no int8 calibration
#endif
  EXPECT_NE(b.engine().find("LibTorch"), std::string::npos) << b.engine();
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) {
    paths.push_back(dir / ("x" + std::to_string(i) + ".png"));
    ft::write_image(paths.back(), ft::synthetic_xray(90 + 9 * i, 110, 30 + i, i % 2 == 0));
  }
  std::vector<Prediction> pa, pb;
  a.predict_files(paths, [&](const std::vector<Prediction>& batch) { pa.insert(pa.end(), batch.begin(), batch.end()); });
  b.predict_files(paths, [&](const std::vector<Prediction>& batch) { pb.insert(pb.end(), batch.begin(), batch.end()); });
  ASSERT_EQ(pa.size(), paths.size());
  ASSERT_EQ(pb.size(), paths.size());
  double spread = 0;
  const auto log_odds = [](double p) { return std::log(p / (1 - p)); };
  for (size_t i = 0; i < paths.size(); ++i) {
    ASSERT_TRUE(pa[i].ok() && pb[i].ok()) << pa[i].error << pb[i].error;
    EXPECT_NEAR(pa[i].probability, pb[i].probability, 1e-5) << paths[i];
    spread = std::max(spread, std::abs(log_odds(pa[i].probability) - log_odds(pa[0].probability)));
  }
  // The images are told apart, so the comparison means something. In
  // log-odds: the random draw differs by CPU (issue 37), and one that leaves
  // the probabilities near 1 still separates the images there.
  EXPECT_GT(spread, 1e-2);
  // An unknown precision is refused before the model loads.
  PredictorOptions odd = fused;
  odd.precision = "int4";
  EXPECT_THROW(Predictor{odd}, std::invalid_argument);
}
