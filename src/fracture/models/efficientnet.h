#pragma once
// EfficientNet-B0..B7 and EfficientNet-Lite0..4 from one builder.
//
// As in the papers (Tan & Le 2019; the TF EfficientNet-Lite release), every
// variant is the B0 architecture table scaled in width (channels) and depth
// (repeats per stage). Lite differs by: no squeeze-excitation, ReLU6, and a
// fixed stem, head and first/last stage depth ("fix_head_stem"), which keeps
// it friendly to integer quantisation.
#include <string>
#include <vector>

#include "fracture/models/classifier.h"
#include "fracture/models/layers.h"

namespace fracture::models {

// One row of the architecture table, e.g. "r2_k5_s2_e6_c40":
// repeats, kernel, stride (first block), expansion ratio, output channels.
struct StageArgs {
  int repeats = 1, kernel = 3, stride = 1, expand = 1;
  int64_t channels = 16;
};
StageArgs decode_stage(const std::string& spec);
// The B0 table that every variant scales.
const std::vector<std::string>& efficientnet_b0_table();

struct EfficientNetConfig {
  double width = 1.0;  // channel multiplier
  double depth = 1.0;  // repeat multiplier
  double dropout = 0.2;
  double drop_path = 0.2;  // stochastic depth, rising linearly to this over the blocks
  Activation act = Activation::SiLU;
  bool squeeze_excite = true;
  bool lite = false;  // Lite rule: stem/head width and first/last stage depth not scaled
  bool tf_same_padding = false;
  double bn_eps = 1e-5;
  double bn_momentum = 0.1;
  int64_t num_classes = 1000;
};

// TF's round_filters: scale, round to a multiple of 8, never shrink > 10%.
int64_t round_channels(double channels, double multiplier, int64_t divisor = 8);

struct MBConvOptions {
  int64_t in, out, kernel, stride, expand;
  bool squeeze_excite;
  Activation act;
  bool tf_same_padding;
  double bn_eps, bn_momentum, drop_path;
};

// Mobile inverted bottleneck: [1x1 expand] -> depthwise kxk -> [SE] ->
// 1x1 project, with a residual (and stochastic depth) when shapes allow.
class MBConvImpl : public torch::nn::Module {
 public:
  explicit MBConvImpl(const MBConvOptions& o);
  torch::Tensor forward(torch::Tensor x);
  bool has_expand() const { return !expand.is_empty(); }
  bool has_se() const { return !se.is_empty(); }
  bool residual() const { return residual_; }

  ConvBnAct expand{nullptr}, dw{nullptr}, project{nullptr};
  SqueezeExcite se{nullptr};

 private:
  bool residual_;
  double drop_path_;
};
TORCH_MODULE(MBConv);

// Where each block sits; weight-name conversion needs it.
struct BlockLayout {
  int stage, index, flat;
  bool has_expand, has_se;
};

class EfficientNetImpl : public ClassifierImpl {
 public:
  explicit EfficientNetImpl(const EfficientNetConfig& config);

  // Stages: 0 = stem, 1..7 = the table's stages, 8 = 1x1 head conv.
  int num_stages() const override { return static_cast<int>(stages_.size()) + 2; }
  torch::Tensor forward_stage(int index, torch::Tensor x) override;
  std::vector<std::shared_ptr<torch::nn::Module>> stage_modules(int index) override;
  torch::Tensor forward_average_head(torch::Tensor features) override;
  torch::Tensor cell_logits(torch::Tensor features) override;
  int64_t num_features() const override { return num_features_; }
  int64_t num_classes() const override { return classifier->options.out_features(); }
  void reset_classifier(int64_t num_classes) override;
  std::string classifier_prefix() const override { return "classifier."; }

  std::vector<BlockLayout> layout() const;
  const std::vector<std::vector<MBConv>>& stages() const { return stages_; }
  const EfficientNetConfig& config() const { return config_; }

  ConvBnAct stem{nullptr}, head_conv{nullptr};
  torch::nn::ModuleList blocks{nullptr};  // blocks[stage][index]
  torch::nn::Dropout dropout{nullptr};
  torch::nn::Linear classifier{nullptr};

 private:
  EfficientNetConfig config_;
  std::vector<std::vector<MBConv>> stages_;
  int64_t num_features_;
};
TORCH_MODULE(EfficientNet);

}  // namespace fracture::models
