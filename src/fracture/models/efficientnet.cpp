#include "fracture/models/efficientnet.h"

#include <cmath>
#include <sstream>
#include <stdexcept>

namespace fracture::models {

const std::vector<std::string>& efficientnet_b0_table() {
  static const std::vector<std::string> table = {
      "r1_k3_s1_e1_c16",  "r2_k3_s2_e6_c24",  "r2_k5_s2_e6_c40",  "r3_k3_s2_e6_c80",
      "r3_k5_s1_e6_c112", "r4_k5_s2_e6_c192", "r1_k3_s1_e6_c320",
  };
  return table;
}

StageArgs decode_stage(const std::string& spec) {
  StageArgs a;
  std::stringstream ss(spec);
  std::string part;
  while (std::getline(ss, part, '_')) {
    if (part.size() < 2) throw std::invalid_argument("bad stage spec '" + spec + "'");
    const long v = std::stol(part.substr(1));
    switch (part[0]) {
      case 'r': a.repeats = static_cast<int>(v); break;
      case 'k': a.kernel = static_cast<int>(v); break;
      case 's': a.stride = static_cast<int>(v); break;
      case 'e': a.expand = static_cast<int>(v); break;
      case 'c': a.channels = v; break;
      default: throw std::invalid_argument("bad stage spec '" + spec + "'");
    }
  }
  return a;
}

int64_t round_channels(double channels, double multiplier, int64_t divisor) {
  const double scaled = channels * multiplier;
  int64_t rounded = std::max<int64_t>(divisor, static_cast<int64_t>(scaled + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * scaled) rounded += divisor;
  return rounded;
}

MBConvImpl::MBConvImpl(const MBConvOptions& o)
    : residual_(o.stride == 1 && o.in == o.out), drop_path_(o.drop_path) {
  const int64_t mid = o.in * o.expand;
  auto cba = [&](int64_t in, int64_t out, int64_t k, int64_t s, int64_t g, Activation act) {
    return ConvBnAct(ConvBnActOptions{in, out, k, s, g, act, o.tf_same_padding, o.bn_eps, o.bn_momentum});
  };
  if (o.expand != 1) expand = register_module("expand", cba(o.in, mid, 1, 1, 1, o.act));
  dw = register_module("dw", cba(mid, mid, o.kernel, o.stride, mid, o.act));
  if (o.squeeze_excite) se = register_module("se", SqueezeExcite(mid, std::max<int64_t>(1, o.in / 4), o.act));
  project = register_module("project", cba(mid, o.out, 1, 1, 1, Activation::None));
}

torch::Tensor MBConvImpl::forward(torch::Tensor x) {
  torch::Tensor y = has_expand() ? expand(x) : x;
  y = dw(y);
  if (has_se()) y = se(y);
  y = project(y);
  if (!residual_) return y;
  if (!torch::GradMode::is_enabled() && !is_training()) return y.add_(x);  // inference: no new buffer
  return x + drop_path(y, drop_path_, is_training());
}

EfficientNetImpl::EfficientNetImpl(const EfficientNetConfig& c) : config_(c) {
  auto ch = [&](double base) { return round_channels(base, c.width); };
  const int64_t stem_out = c.lite ? 32 : ch(32);
  stem = register_module("stem", ConvBnAct(ConvBnActOptions{3, stem_out, 3, 2, 1, c.act, c.tf_same_padding, c.bn_eps, c.bn_momentum}));

  const auto& table = efficientnet_b0_table();
  std::vector<StageArgs> args;
  int total_blocks = 0;
  for (size_t s = 0; s < table.size(); ++s) {
    StageArgs a = decode_stage(table[s]);
    const bool fixed_depth = c.lite && (s == 0 || s + 1 == table.size());
    if (!fixed_depth) a.repeats = static_cast<int>(std::ceil(c.depth * a.repeats));
    a.channels = ch(static_cast<double>(a.channels));
    total_blocks += a.repeats;
    args.push_back(a);
  }

  blocks = register_module("blocks", torch::nn::ModuleList());
  int64_t in = stem_out;
  int flat = 0;
  for (const StageArgs& a : args) {
    torch::nn::ModuleList stage_list;
    std::vector<MBConv> stage_blocks;
    for (int b = 0; b < a.repeats; ++b, ++flat) {
      MBConvOptions o{in, a.channels, a.kernel, b == 0 ? a.stride : 1, a.expand, c.squeeze_excite, c.act,
                      c.tf_same_padding, c.bn_eps, c.bn_momentum, c.drop_path * flat / total_blocks};
      MBConv block(o);
      stage_list->push_back(block);
      stage_blocks.push_back(block);
      in = a.channels;
    }
    blocks->push_back(stage_list);
    stages_.push_back(stage_blocks);
  }

  num_features_ = c.lite ? 1280 : ch(1280);
  head_conv = register_module("head", ConvBnAct(ConvBnActOptions{in, num_features_, 1, 1, 1, c.act, c.tf_same_padding, c.bn_eps, c.bn_momentum}));
  dropout = register_module("dropout", torch::nn::Dropout(c.dropout));
  classifier = register_module("classifier", torch::nn::Linear(num_features_, c.num_classes));

  // Initialisation as in torchvision: He (fan-out) for convs, BN at identity;
  // the classifier is initialised by reset_classifier.
  for (auto& m : modules(false)) {
    if (auto* conv = m->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut);
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  }
  reset_classifier(c.num_classes);
}

void EfficientNetImpl::reset_classifier(int64_t num_classes) {
  classifier = replace_module("classifier", torch::nn::Linear(num_features_, num_classes));
  // Small weights: torchvision's uniform(+-1/sqrt(classes)) is tuned for 1000
  // classes; for a 2-class transfer head it is +-0.7, and with 1280 ReLU6
  // features the first logits were ~+-40 (losses of 3 where chance is 0.69).
  torch::NoGradGuard guard;
  classifier->weight.normal_(0.0, 0.01);
  classifier->bias.zero_();
}

torch::Tensor EfficientNetImpl::forward_stage(int index, torch::Tensor x) {
  if (index == 0) return stem(x);
  if (index == num_stages() - 1) return head_conv(x);
  for (auto& block : stages_.at(index - 1)) x = block(x);
  return x;
}

std::vector<std::shared_ptr<torch::nn::Module>> EfficientNetImpl::stage_modules(int index) {
  if (index == 0) return {stem.ptr()};
  if (index == num_stages() - 1) return {head_conv.ptr()};
  return {blocks[index - 1]};
}

torch::Tensor EfficientNetImpl::forward_average_head(torch::Tensor features) {
  auto x = torch::adaptive_avg_pool2d(features, {1, 1}).flatten(1);
  return classifier(dropout(x));
}

torch::Tensor EfficientNetImpl::cell_logits(torch::Tensor features) {
  const auto& w = classifier->weight;
  return torch::conv2d(dropout(features), w.view({w.size(0), w.size(1), 1, 1}), classifier->bias);
}

std::vector<BlockLayout> EfficientNetImpl::layout() const {
  std::vector<BlockLayout> out;
  int flat = 0;
  for (size_t s = 0; s < stages_.size(); ++s)
    for (size_t b = 0; b < stages_[s].size(); ++b, ++flat)
      out.push_back({static_cast<int>(s), static_cast<int>(b), flat, stages_[s][b]->has_expand(), stages_[s][b]->has_se()});
  return out;
}

}  // namespace fracture::models
