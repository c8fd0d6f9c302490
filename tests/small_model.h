#pragma once
// A random-weight ResNet-18 at 64 px, saved as a model file: fast to run, and
// its probabilities differ by image. For tests of the Predictor and the server.
#include <string>
#include <vector>

#include "fracture/models/registry.h"
#include "fracture/train/checkpoint.h"

namespace fracture::testing {

inline std::string save_small_model(const std::string& path, std::vector<std::string> classes, double threshold,
                                    uint64_t seed) {
  torch::manual_seed(seed);
  auto net = models::find_model("resnet18").build(static_cast<int64_t>(classes.size()));
  train::ModelInfo info;
  info.architecture = "resnet18";
  info.class_names = std::move(classes);
  info.preprocess.size = 64;
  info.threshold = threshold;
  train::save_model(path, *net, info);
  return path;
}

}  // namespace fracture::testing
