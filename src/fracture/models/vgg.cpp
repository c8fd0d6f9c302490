#include "fracture/models/vgg.h"

namespace fracture::models {

VGGImpl::VGGImpl(int64_t num_classes, double dropout) : dropout_(dropout) {
  // 0 marks a max-pool; the numbers are conv widths (configuration "D").
  const int cfg[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  features = torch::nn::Sequential();
  int64_t in = 3;
  size_t begin = 0;
  for (int c : cfg) {
    if (c == 0) {
      features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
      stages_.emplace_back(begin, features->size());
      begin = features->size();
    } else {
      features->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, c, 3).padding(1)));
      features->push_back(torch::nn::ReLU());
      in = c;
    }
  }
  register_module("features", features);
  reset_classifier(num_classes);
}

void VGGImpl::reset_classifier(int64_t num_classes) {
  auto fresh = torch::nn::Sequential(
      torch::nn::Linear(512 * 7 * 7, 4096), torch::nn::ReLU(), torch::nn::Dropout(dropout_),
      torch::nn::Linear(4096, 4096), torch::nn::ReLU(), torch::nn::Dropout(dropout_),
      torch::nn::Linear(4096, num_classes));
  if (classifier.is_empty()) {
    classifier = register_module("classifier", fresh);
  } else {
    // Transfer learning keeps the two pretrained 4096-wide layers and
    // replaces only the last one.
    torch::nn::Sequential kept;
    for (size_t i = 0; i < 6; ++i) kept->push_back(*(classifier->begin() + i));
    kept->push_back(*(fresh->begin() + 6));
    classifier = replace_module("classifier", kept);
  }
}

int64_t VGGImpl::num_classes() const {
  return classifier->ptr(6)->as<torch::nn::Linear>()->options.out_features();
}

torch::Tensor VGGImpl::forward_stage(int index, torch::Tensor x) {
  const auto [begin, end] = stages_.at(index);
  for (auto it = features->begin() + begin; it != features->begin() + end; ++it) x = it->forward(x);
  return x;
}

std::vector<std::shared_ptr<torch::nn::Module>> VGGImpl::stage_modules(int index) {
  const auto [begin, end] = stages_.at(index);
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  for (size_t i = begin; i < end; ++i) out.push_back(features->ptr(i));
  return out;
}

torch::Tensor VGGImpl::forward_average_head(torch::Tensor feats) {
  return classifier->forward(torch::adaptive_avg_pool2d(feats, {7, 7}).flatten(1));
}

torch::Tensor VGGImpl::cell_logits(torch::Tensor) {
  throw std::invalid_argument("vgg: its classifier is a three-layer MLP over a 7x7 grid, not one linear layer per cell");
}

}  // namespace fracture::models
