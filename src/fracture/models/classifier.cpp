#include "fracture/models/classifier.h"

#include <cmath>
#include <stdexcept>

namespace fracture::models {

torch::Tensor ClassifierImpl::forward_head(torch::Tensor features) {
  if (cell_pooling_ <= 0) return forward_average_head(features);
  return pool_log_odds(cell_log_odds(features));
}

torch::Tensor ClassifierImpl::pool_log_odds(const torch::Tensor& cell_log_odds) const {
  if (cell_pooling_ <= 0) throw std::logic_error("pool_log_odds: cell pooling is off");
  const auto d = cell_log_odds.flatten(1);  // [N, h*w]
  const auto n = static_cast<double>(d.size(1));
  const auto s = (torch::logsumexp(cell_pooling_ * d, 1) - std::log(n)) / cell_pooling_;
  // Logits whose softmax is sigmoid(s): class 1's probability is the pooled one.
  return torch::stack({torch::zeros_like(s), s}, 1);
}

torch::Tensor ClassifierImpl::cell_log_odds(torch::Tensor features) {
  if (num_classes() != 2) throw std::invalid_argument("cell log-odds need a two-class model");
  const auto z = cell_logits(features);
  return z.select(1, 1) - z.select(1, 0);
}

void ClassifierImpl::set_cell_pooling(double sharpness) {
  if (!(sharpness >= 0) || !std::isfinite(sharpness))
    throw std::invalid_argument("cell pooling sharpness must be a finite number >= 0");
  if (sharpness > 0 && num_classes() != 2) throw std::invalid_argument("cell pooling needs a two-class model");
  cell_pooling_ = sharpness;
}

}  // namespace fracture::models
