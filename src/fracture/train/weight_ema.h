#pragma once
// Exponential moving average of all weights (--ema); evaluation and saving
// use the average, training the raw weights.
#include "fracture/models/classifier.h"
#include "fracture/models/weights_io.h"

namespace fracture::train {

class WeightEma {
 public:
  WeightEma(models::ClassifierImpl& net, double decay) : net_(net), decay_(decay) {
    for (auto& [k, v] : models::module_state(net)) shadow_[k] = v.detach().clone();
  }
  void update() {
    torch::NoGradGuard g;
    for (auto& [k, v] : models::module_state(net_)) {
      auto& s = shadow_.at(k);
      if (v.is_floating_point()) s.mul_(decay_).add_(v.detach(), 1 - decay_);
      else s.copy_(v);
    }
  }
  // Swaps the model's weights with the average (call twice to undo).
  void swap() {
    torch::NoGradGuard g;
    for (auto& [k, v] : models::module_state(net_)) {
      auto tmp = v.detach().clone();
      v.copy_(shadow_.at(k));
      shadow_.at(k).copy_(tmp);
    }
  }
  models::TensorMap& state() { return shadow_; }

 private:
  models::ClassifierImpl& net_;
  double decay_;
  models::TensorMap shadow_;
};

}  // namespace fracture::train
