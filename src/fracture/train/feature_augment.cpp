#include "fracture/train/feature_augment.h"

#include <stdexcept>

namespace fracture::train {

torch::Tensor augment_feature_maps(const torch::Tensor& x, const FeatureAugmentOptions& o) {
  if (x.dim() != 4) throw std::invalid_argument("augment_feature_maps: expected [N, C, H, W]");
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const int64_t s = std::min<int64_t>(o.max_shift, std::min(h, w) - 1);
  auto flip = torch::rand({n}) < o.flip_probability;
  auto shifts = s > 0 ? torch::randint(-s, s + 1, {n, 2}, torch::kLong) : torch::zeros({n, 2}, torch::kLong);
  auto flip_a = flip.accessor<bool, 1>();
  auto shift_a = shifts.accessor<int64_t, 2>();

  namespace F = torch::nn::functional;
  auto padded = s > 0 ? F::pad(x, F::PadFuncOptions({s, s, s, s}).mode(torch::kReplicate)) : x;
  std::vector<torch::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    // Window of the padded map: offset s is the original position.
    const int64_t dy = s + shift_a[i][0], dx = s + shift_a[i][1];
    auto m = padded[i].slice(1, dy, dy + h).slice(2, dx, dx + w);
    out.push_back(flip_a[i] ? m.flip({2}) : m);
  }
  return torch::stack(out).contiguous(x.suggest_memory_format());
}

}  // namespace fracture::train
