#pragma once
// Random-weight models saved as model files, for tests of the Predictor, the
// server, the exporter and the oneDNN body.
//
// A random-weight ResNet-18 at 64 px, saved as a model file: fast to run, and
// its probabilities differ by image. For tests of the Predictor and the server.
#include <cmath>
#include <string>
#include <vector>

#include "fracture/models/registry.h"
#include "fracture/train/checkpoint.h"

namespace fracture::testing {

inline std::string save_small_model(const std::string& path, std::vector<std::string> classes, double threshold,
                                    uint64_t seed, bool standardise = false) {
  torch::manual_seed(seed);
  auto net = models::find_model("resnet18").build(static_cast<int64_t>(classes.size()));
  train::ModelInfo info;
  info.architecture = "resnet18";
  info.class_names = std::move(classes);
  info.preprocess.size = 64;
  info.preprocess.standardise = standardise;
  info.threshold = threshold;
  train::save_model(path, *net, info);
  return path;
}

// A random network that still sees its input: convolutions He-initialised
// on their fan-in (the builders' fan-out rule makes depthwise weights so
// small that the signal dies and every image gets the same output);
// BatchNorm away from identity, so that folding it into the convolutions is
// really checked; a classifier scaled to the features so that the
// probabilities are neither all 0 or 1 nor all alike.
inline void randomise(models::ClassifierImpl& net, int size) {
  torch::NoGradGuard no_grad;
  for (auto& m : net.modules(/*include_self=*/false))
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      const auto& w = conv->weight;
      conv->weight.normal_(0, std::sqrt(2.0 / (w.size(1) * w.size(2) * w.size(3))));
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
      bn->running_mean.uniform_(-0.2, 0.2);
      bn->running_var.uniform_(0.5, 2.0);
    }
  // The classifier sees the features' variation across inputs, not their
  // common part: logits centred near 0, differing by ~1 between images.
  net.eval();
  const auto pooled = net.forward_features(torch::randn({4, 3, size, size})).mean({2, 3});  // [4, F]
  const auto centre = pooled.mean(0);
  const double spread = (pooled - centre).norm().item<double>() / 2 + 1e-6;
  auto params = net.named_parameters();
  auto& weight = params[net.classifier_prefix() + "weight"];
  weight.normal_(0, 1.0 / spread);
  params[net.classifier_prefix() + "bias"].copy_(-torch::mv(weight, centre));
}

inline std::string save_random_model(const std::string& path, const std::string& arch, int classes, int size,
                              double cell_pooling, uint64_t seed) {
  torch::manual_seed(seed);
  const auto& spec = models::find_model(arch);
  auto net = spec.build(classes);
  randomise(*net, size);
  train::ModelInfo info;
  info.architecture = arch;
  for (int c = 0; c < classes; ++c) info.class_names.push_back("class" + std::to_string(c));
  info.preprocess.size = size;
  info.preprocess.mean = spec.mean;
  info.preprocess.std = spec.std;
  info.threshold = 0.3;
  info.cell_pooling = cell_pooling;
  train::save_model(path, *net, info);
  return path;
}

// Two random EfficientNet-Lite0 models (seeds a and b, 2 classes) saved
// beside `path` as PATH.a.safetensors and PATH.b.safetensors, and joined as
// an ensemble file at `path`.
inline std::string save_random_ensemble(const std::string& path, int size, uint64_t seed_a, uint64_t seed_b) {
  const auto a = train::load_model(save_random_model(path + ".a.safetensors", "efficientnet_lite0", 2, size, 0, seed_a));
  const auto b = train::load_model(save_random_model(path + ".b.safetensors", "efficientnet_lite0", 2, size, 0, seed_b));
  auto info = a.info;
  info.members = 2;
  train::save_ensemble(path, {a.net, b.net}, info);
  return path;
}

}  // namespace fracture::testing
