// `fracture export` against ONNX Runtime (PyPI, in .venv-onnx, which
// scripts/setup.sh makes): the exported file must give fracture's own
// probabilities within 1e-4, for the shipped models and for random networks
// of every block kind the exporter writes. And the preprocessing its
// metadata states, done in Python from the metadata alone, must reproduce
// fracture's input tensor.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "fracture/export/onnx.h"
#include "fracture/models/registry.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"
#include "small_model.h"

#ifndef FRACTURE_ONNX_PYTHON
#error "FRACTURE_ONNX_PYTHON: the Python of the ONNX Runtime test environment"
#endif

using namespace fracture;
namespace ft = fracture::testing;

namespace {

std::vector<float> read_floats(const std::string& path) {
  const auto bytes = util::read_file(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Exports `model_path`, scores `n` generated images of the input size with
// fracture and with ONNX Runtime, and compares.
void expect_onnx_runtime_agrees(const std::string& model_path, int n) {
  SCOPED_TRACE(model_path);
  ft::TempDir dir;
  PredictorOptions options{model_path};
  options.precision = "fp32";  // the exported graph is fp32; auto may pick int8 for a calibrated model
  Predictor predictor(options);
  const int size = predictor.info().preprocess.size;
  const auto classes = static_cast<int64_t>(predictor.classes().size());
  exporter::export_onnx(model_path, dir / "model.onnx");

  std::vector<PreparedImage> images;
  std::vector<torch::Tensor> inputs;
  for (int i = 0; i < n; ++i) {
    const auto path = dir / ("images/img" + std::to_string(i) + ".png");
    ft::write_image(path, ft::synthetic_xray(size, size, 100 + i, i % 2 == 1));
    images.push_back(predictor.prepare(util::read_file(path), path));
    inputs.push_back(images.back().input);
  }
  const auto input = torch::stack(inputs).contiguous();
  util::write_file_atomic(dir / "input.f32",
                          std::string_view(static_cast<const char*>(input.data_ptr()), input.numel() * sizeof(float)));
  const auto predictions = predictor.score(images);

  const std::string command = std::string(FRACTURE_ONNX_PYTHON) + " " + FRACTURE_SOURCE_DIR +
                              "/tests/reference/run_onnx.py " + dir.path.string();
  ASSERT_EQ(std::system(command.c_str()), 0)
      << command << " failed. Its environment is made by scripts/setup.sh (.venv-onnx: onnxruntime, numpy, pillow).";

  const auto ort = read_floats(dir / "ort.f32"), recipe = read_floats(dir / "recipe.f32");
  const auto ort_logits = read_floats(dir / "ort_logits.f32");
  ASSERT_EQ(ort.size(), static_cast<size_t>(n * classes));
  ASSERT_EQ(recipe.size(), ort.size());
  ASSERT_EQ(ort_logits.size(), ort.size());
  // Probabilities, and the log-odds of each class against the first: a
  // confident model (the shipped ensemble on generated images) puts every
  // probability near 0 or 1, where only the log-odds still tell images apart.
  double worst = 0, worst_recipe = 0, worst_log_odds = 0, spread = 0;
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(predictions[i].ok()) << predictions[i].error;
    const auto& p = predictions[i].probabilities;
    for (int64_t c = 0; c < classes; ++c) {
      worst = std::max(worst, std::abs(p[c] - ort[i * classes + c]));
      worst_recipe = std::max(worst_recipe, std::abs(p[c] - recipe[i * classes + c]));
      if (c == 0) continue;
      const double ours = std::log(p[c]) - std::log(p[0]);
      const double theirs = ort_logits[i * classes + c] - ort_logits[i * classes];
      worst_log_odds = std::max(worst_log_odds, std::abs(ours - theirs));
      const auto& first = predictions[0].probabilities;
      spread = std::max(spread, std::abs(ours - (std::log(first[c]) - std::log(first[0]))));
    }
  }
  EXPECT_LE(worst, 1e-4) << "largest probability difference, ONNX Runtime on fracture's inputs";
  EXPECT_LE(worst_recipe, 1e-4) << "largest probability difference, ONNX Runtime on the metadata's preprocessing";
  EXPECT_LE(worst_log_odds, 1e-2) << "largest log-odds difference, ONNX Runtime on fracture's inputs";
  EXPECT_GT(spread, 0.1) << "every image gets the same log-odds: the network ignores its input";
  std::ifstream diff(dir / "recipe_input_diff.txt");
  double input_diff = 1;
  diff >> input_diff;
  EXPECT_LE(input_diff, 1e-6) << "the metadata's preprocessing differs from fracture's input";
}

}  // namespace

TEST(OnnxExport, ShippedFractureModelMatchesOnnxRuntime) {
  // EfficientNet-Lite0 (ReLU6, TF padding) at 384 px, with cell pooling.
  expect_onnx_runtime_agrees(std::string(FRACTURE_SOURCE_DIR) + "/model/fracatlas.safetensors", 4);
}

TEST(OnnxExport, ShippedTypeModelMatchesOnnxRuntime) {
  // Ten classes, average pooling and a linear head.
  expect_onnx_runtime_agrees(std::string(FRACTURE_SOURCE_DIR) + "/model/bone-types.safetensors", 2);
}

TEST(OnnxExport, EveryBlockKindMatchesOnnxRuntime) {
  ft::TempDir dir;
  // Squeeze-excitation, SiLU and symmetric padding; three classes.
  expect_onnx_runtime_agrees(ft::save_random_model(dir / "b0.safetensors", "efficientnet_b0", 3, 96, 0, 1), 3);
  // TF "SAME" padding at 70 px: strided convs meet even sizes (asymmetric
  // pads: 70, 18) and odd ones (symmetric: 35, 9); cell pooling.
  expect_onnx_runtime_agrees(ft::save_random_model(dir / "lite.safetensors", "efficientnet_lite0", 2, 70, 2.0, 2), 3);
  // ResNet basic blocks with cell pooling; bottleneck blocks.
  expect_onnx_runtime_agrees(ft::save_random_model(dir / "r18.safetensors", "resnet18", 2, 64, 8.0, 3), 3);
  expect_onnx_runtime_agrees(ft::save_random_model(dir / "r50.safetensors", "resnet50", 2, 64, 0, 4), 2);
}

TEST(OnnxExport, AnEnsembleMatchesOnnxRuntime) {
  // Two networks in one graph, combined as the Predictor combines them.
  ft::TempDir dir;
  expect_onnx_runtime_agrees(ft::save_random_ensemble(dir / "pair.safetensors", 64, 5, 6), 3);
}
