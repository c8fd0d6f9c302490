#pragma once
// A LibTorch re-computation of the int8 oneDNN program's arithmetic
// (models/onednn_body.cpp): per-channel s8 weights, per-tensor u8/s8
// activations at the calibrated ranges, exact integer sums, the bias at the
// sum's scale, ReLU6 in real values, residual sums rescaled to the output's
// step, rounding half to even and saturation, in the program's own order of
// float steps. The oracle the int8 tests compare the program with.
#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "fracture/models/efficientnet.h"

namespace fracture::testing {

// One activation as the program stores it: integer levels (as doubles) and
// the scale from real values to levels.
struct Levels {
  torch::Tensor q;
  float scale;
  bool non_negative;
};

// The program's conv: int32 sum of levels x s8 weights, f32 bias at the
// sum's scale, output scale, then ReLU6 in real values and the output step,
// or a residual sum; rounded half to even and saturated to u8/s8, or left
// real (out_range 0).
inline Levels simulate_conv(const models::ConvBnActImpl& layer, const Levels& in, float out_range, const Levels* residual) {
  const auto& o = layer.options();
  auto [weight, bias] = layer.inference_weight_and_bias();
  const bool activated = o.act == models::Activation::ReLU6 || o.act == models::Activation::ReLU;
  const float levels = activated ? 255.f : 127.f;
  const float dst_scale = out_range <= 0 ? 1.f : levels / std::max(out_range, 1e-6f);
  const auto w_scale = 127.0 / weight.flatten(1).abs().amax(1).clamp_min(1e-12);
  const auto wq = (weight * w_scale.view({-1, 1, 1, 1})).round().clamp(-127, 127);
  const auto bias_q = bias * w_scale * in.scale;
  const auto out_scales = (1.0 / (w_scale * in.scale) * (activated ? 1.f : dst_scale)).to(torch::kFloat);
  const int64_t h = in.q.size(2), w = in.q.size(3), k = o.kernel, s = o.stride;
  int64_t top = (k - 1) / 2, bottom = top, left = top, right = top;
  if (o.tf_same_padding && s > 1) {
    const int64_t ph = models::tf_same_pad_total(h, k, s), pw = models::tf_same_pad_total(w, k, s);
    top = ph / 2, bottom = ph - top, left = pw / 2, right = pw - left;
  }
  namespace F = torch::nn::functional;
  const auto padded = F::pad(in.q, F::PadFuncOptions({left, right, top, bottom}));
  const auto acc = F::conv2d(padded, wq.to(torch::kDouble), F::Conv2dFuncOptions().stride(s).groups(o.groups));
  auto y = (acc.to(torch::kFloat) + bias_q.view({1, -1, 1, 1})) * out_scales.view({1, -1, 1, 1});
  if (o.act == models::Activation::ReLU6) y = y.clamp(0, 6) * dst_scale;
  if (o.act == models::Activation::ReLU) y = y.clamp_min(0) * dst_scale;
  if (residual) y = y + residual->q.to(torch::kFloat) * (dst_scale / residual->scale);
  if (out_range > 0) y = activated ? y.round().clamp(0, 255) : y.round().clamp(-128, 127);
  return {y.to(torch::kDouble), dst_scale, activated};
}

// The whole body, as OneDnnBody::Program::build lays it out.
inline torch::Tensor simulate_int8_body(const models::EfficientNetImpl& net, const torch::Tensor& images,
                                 const std::vector<float>& ranges) {
  size_t next = 0;
  const float input_scale = 127.f / ranges.at(next++);
  Levels x{(images * input_scale).round().clamp(-128, 127).to(torch::kDouble), input_scale, false};
  x = simulate_conv(*net.stem, x, ranges.at(next++), nullptr);
  for (const auto& stage : net.stages())
    for (const auto& block : stage) {
      Levels y = block->has_expand() ? simulate_conv(*block->expand, x, ranges.at(next++), nullptr) : x;
      y = simulate_conv(*block->dw, y, ranges.at(next++), nullptr);
      x = simulate_conv(*block->project, y, ranges.at(next++), block->residual() ? &x : nullptr);
    }
  return simulate_conv(*net.head_conv, x, 0.f, nullptr).q.to(torch::kFloat);
}

}  // namespace fracture::testing
