#pragma once
// Model names -> builders, native input size, input normalisation and the
// pretrained weights known for each.
#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fracture/models/classifier.h"

namespace fracture::models {

struct PretrainedSource {
  std::string file;         // name inside the weights cache directory
  std::string origin;       // where setup gets it, for messages and model cards
  std::string sha256;       // of the original file as published
};

struct ModelSpec {
  std::string name;
  std::string description;
  int input_size;                // native resolution of the ImageNet weights
  std::array<float, 3> mean;     // per-channel, on [0, 1] pixel values
  std::array<float, 3> std;
  std::optional<PretrainedSource> imagenet;
  std::function<Classifier(int64_t num_classes)> build;
};

const std::vector<ModelSpec>& model_registry();
// Throws std::invalid_argument listing the known names.
const ModelSpec& find_model(const std::string& name);

struct CreateOptions {
  int64_t num_classes = 1000;
  bool imagenet = false;           // load the registry's ImageNet weights
  std::string weights_path;        // or load this file (any supported naming)
};

// Builds the model and loads the requested weights. Missing ImageNet weights
// throw with a message saying exactly how to get them.
Classifier create_model(const std::string& name, const CreateOptions& options = {});

// Full path of a spec's ImageNet weights in the cache (whether or not present).
std::string imagenet_weights_path(const ModelSpec& spec);

}  // namespace fracture::models
