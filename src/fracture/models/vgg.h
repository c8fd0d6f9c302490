#pragma once
// VGG-16 (Simonyan & Zisserman 2015) with torchvision's layout and names
// (features.N, classifier.0/3/6). Baseline for the paper's comparison.
#include "fracture/models/classifier.h"

namespace fracture::models {

class VGGImpl : public ClassifierImpl {
 public:
  explicit VGGImpl(int64_t num_classes = 1000, double dropout = 0.5);
  // Stages: the five conv blocks, each ending in a max-pool.
  int num_stages() const override { return static_cast<int>(stages_.size()); }
  torch::Tensor forward_stage(int index, torch::Tensor x) override;
  std::vector<std::shared_ptr<torch::nn::Module>> stage_modules(int index) override;
  torch::Tensor forward_average_head(torch::Tensor features) override;
  torch::Tensor cell_logits(torch::Tensor features) override;
  int64_t num_features() const override { return 512; }
  int64_t num_classes() const override;
  void reset_classifier(int64_t num_classes) override;
  std::string classifier_prefix() const override { return "classifier.6."; }

  torch::nn::Sequential features{nullptr}, classifier{nullptr};

 private:
  std::vector<std::pair<size_t, size_t>> stages_;  // [begin, end) into features
  double dropout_;
};
TORCH_MODULE(VGG);

}  // namespace fracture::models
