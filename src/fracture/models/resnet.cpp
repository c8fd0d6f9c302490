#include "fracture/models/resnet.h"

namespace fracture::models {
namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}

}  // namespace

ResNetBlockImpl::ResNetBlockImpl(int64_t in, int64_t planes, int64_t stride, bool bottleneck)
    : bottleneck_(bottleneck) {
  const int64_t out = planes * expansion(bottleneck);
  if (bottleneck) {
    // torchvision's "ResNet v1.5": the stride sits on the 3x3 conv.
    conv1 = register_module("conv1", conv(in, planes, 1, 1));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv(planes, planes, 3, stride));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
    conv3 = register_module("conv3", conv(planes, out, 1, 1));
    bn3 = register_module("bn3", torch::nn::BatchNorm2d(out));
  } else {
    conv1 = register_module("conv1", conv(in, planes, 3, stride));
    bn1 = register_module("bn1", torch::nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv(planes, planes, 3, 1));
    bn2 = register_module("bn2", torch::nn::BatchNorm2d(planes));
  }
  if (stride != 1 || in != out)
    downsample = register_module("downsample", torch::nn::Sequential(conv(in, out, 1, stride), torch::nn::BatchNorm2d(out)));
}

torch::Tensor ResNetBlockImpl::forward(torch::Tensor x) {
  auto y = torch::relu(bn1(conv1(x)));
  y = bn2(conv2(y));
  if (bottleneck_) y = bn3(conv3(torch::relu(y)));
  return torch::relu(y + (downsample ? downsample->forward(x) : x));
}

ResNetImpl::ResNetImpl(const ResNetConfig& c) {
  conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(64));
  int64_t in = 64;
  for (size_t i = 0; i < c.layers.size(); ++i) {
    const int64_t planes = 64LL << i;
    torch::nn::Sequential layer;
    for (int b = 0; b < c.layers[i]; ++b) {
      layer->push_back(ResNetBlock(in, planes, (b == 0 && i > 0) ? 2 : 1, c.bottleneck));
      in = planes * ResNetBlockImpl::expansion(c.bottleneck);
    }
    layers_.push_back(register_module("layer" + std::to_string(i + 1), layer));
  }
  num_features_ = in;
  fc = register_module("fc", torch::nn::Linear(in, c.num_classes));
  for (auto& m : modules(false)) {
    if (auto* cv = m->as<torch::nn::Conv2d>()) torch::nn::init::kaiming_normal_(cv->weight, 0.0, torch::kFanOut, torch::kReLU);
  }
}

void ResNetImpl::reset_classifier(int64_t num_classes) {
  fc = replace_module("fc", torch::nn::Linear(num_features_, num_classes));
}

torch::Tensor ResNetImpl::forward_stage(int index, torch::Tensor x) {
  if (index == 0) return torch::max_pool2d(torch::relu(bn1(conv1(x))), 3, 2, 1);
  return layers_.at(index - 1)->forward(x);
}

std::vector<std::shared_ptr<torch::nn::Module>> ResNetImpl::stage_modules(int index) {
  if (index == 0) return {conv1.ptr(), bn1.ptr()};
  return {layers_.at(index - 1).ptr()};
}

torch::Tensor ResNetImpl::forward_average_head(torch::Tensor features) {
  return fc(torch::adaptive_avg_pool2d(features, {1, 1}).flatten(1));
}

torch::Tensor ResNetImpl::cell_logits(torch::Tensor features) {
  return torch::conv2d(features, fc->weight.view({fc->weight.size(0), fc->weight.size(1), 1, 1}), fc->bias);
}

}  // namespace fracture::models
