#pragma once
// ResNet-18/50 (He et al. 2016), laid out exactly as torchvision's so that its
// parameter names (conv1, layer1.0.conv1, ..., fc) are ours too. Baseline
// for the paper's comparison.
#include "fracture/models/classifier.h"

namespace fracture::models {

struct ResNetConfig {
  bool bottleneck = false;             // BasicBlock (18/34) or Bottleneck (50+)
  std::vector<int> layers{2, 2, 2, 2};  // blocks per stage
  int64_t num_classes = 1000;
};

class ResNetBlockImpl : public torch::nn::Module {
 public:
  ResNetBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck);
  torch::Tensor forward(torch::Tensor x);
  static int64_t expansion(bool bottleneck) { return bottleneck ? 4 : 1; }
  bool bottleneck() const { return bottleneck_; }

  // Public, as EfficientNet's, for the ONNX exporter to read.
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};

 private:
  bool bottleneck_;
};
TORCH_MODULE(ResNetBlock);

class ResNetImpl : public ClassifierImpl {
 public:
  explicit ResNetImpl(const ResNetConfig& config);
  // Stages: 0 = conv1/bn1/relu/maxpool, 1..4 = layer1..layer4.
  int num_stages() const override { return 5; }
  torch::Tensor forward_stage(int index, torch::Tensor x) override;
  std::vector<std::shared_ptr<torch::nn::Module>> stage_modules(int index) override;
  torch::Tensor forward_average_head(torch::Tensor features) override;
  torch::Tensor cell_logits(torch::Tensor features) override;
  int64_t num_features() const override { return num_features_; }
  int64_t num_classes() const override { return fc->options.out_features(); }
  void reset_classifier(int64_t num_classes) override;
  std::string classifier_prefix() const override { return "fc."; }
  const std::vector<torch::nn::Sequential>& layers() const { return layers_; }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  std::vector<torch::nn::Sequential> layers_;
  int64_t num_features_;
};
TORCH_MODULE(ResNet);

}  // namespace fracture::models
