#include "fracture/models/layers.h"

namespace fracture::models {

torch::Tensor activate(torch::Tensor x, Activation act) {
  // Without gradients (inference, feature caching) in place: every caller
  // passes a fresh convolution output, and one activation-sized buffer a
  // layer fewer is less memory traffic.
  if (!torch::GradMode::is_enabled()) {
    switch (act) {
      case Activation::None: return x;
      case Activation::ReLU: return torch::relu_(x);
      case Activation::ReLU6: return torch::hardtanh_(x, 0.0, 6.0);
      case Activation::SiLU: return torch::silu_(x);
    }
  }
  switch (act) {
    case Activation::None: return x;
    case Activation::ReLU: return torch::relu(x);
    case Activation::ReLU6: return torch::hardtanh(x, 0.0, 6.0);
    case Activation::SiLU: return torch::silu(x);
  }
  return x;
}

torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, int64_t stride,
                     int64_t padding, int64_t groups) {
  // Inference at any batch size too: with one thread ATen sends batches of
  // 2-15 to the same im2col path (3 img/s against 40 at batch 1, measured
  // with bench/onnx_peers.py --threads 1).
  const bool to_onednn = x.dim() == 4 && (x.size(0) == 1 || !torch::GradMode::is_enabled()) && x.device().is_cpu() &&
                         x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kFloat;
  if (to_onednn && at::hasMKLDNN() && at::globalContext().userEnabledMkldnn()) {
    const c10::optional<torch::Tensor> b = bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
    return at::mkldnn_convolution(x, weight, b, {padding, padding}, {stride, stride}, {1, 1}, groups);
  }
  return torch::conv2d(x, weight, bias, stride, padding, 1, groups);
}

ConvBnActImpl::ConvBnActImpl(const ConvBnActOptions& o) : opt_(o) {
  // Stride-1 odd kernels pad symmetrically under both rules; only strided TF
  // convs need the input-size dependent pad computed in forward().
  dynamic_pad_ = o.tf_same_padding && o.stride > 1;
  const int64_t pad = pad_ = dynamic_pad_ ? 0 : (o.kernel - 1) / 2;
  conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in, o.out, o.kernel)
                                                       .stride(o.stride)
                                                       .padding(pad)
                                                       .groups(o.groups)
                                                       .bias(false)));
  bn = register_module("bn", torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(o.out).eps(o.bn_eps).momentum(o.bn_momentum)));
}

int64_t tf_same_pad_total(int64_t size, int64_t kernel, int64_t stride) {
  const int64_t out = (size + stride - 1) / stride;
  return std::max<int64_t>((out - 1) * stride + kernel - size, 0);
}

torch::Tensor ConvBnActImpl::forward(torch::Tensor x) {
  if (dynamic_pad_) {
    const int64_t ph = tf_same_pad_total(x.size(2), opt_.kernel, opt_.stride);
    const int64_t pw = tf_same_pad_total(x.size(3), opt_.kernel, opt_.stride);
    if (ph > 0 || pw > 0) x = torch::constant_pad_nd(x, {pw / 2, pw - pw / 2, ph / 2, ph - ph / 2}, 0.0);
  }
  if (folded()) {
    return activate(conv2d(x, conv->weight, folded_bias_, opt_.stride, pad_, opt_.groups), opt_.act);
  }
  return activate(bn(conv2d(x, conv->weight, {}, opt_.stride, pad_, opt_.groups)), opt_.act);
}

std::pair<torch::Tensor, torch::Tensor> ConvBnActImpl::inference_weight_and_bias() const {
  torch::NoGradGuard no_grad;
  if (folded()) return {conv->weight.contiguous(), folded_bias_.contiguous()};
  const auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  return {(conv->weight * scale.view({-1, 1, 1, 1})).contiguous(), (bn->bias - bn->running_mean * scale).contiguous()};
}

void ConvBnActImpl::fold_batchnorm() {
  if (folded()) return;
  torch::NoGradGuard no_grad;
  const auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  conv->weight.mul_(scale.view({-1, 1, 1, 1}));
  folded_bias_ = bn->bias - bn->running_mean * scale;  // not a registered buffer: never saved with the model
}

int fold_batchnorms(torch::nn::Module& module) {
  int n = 0;
  for (const auto& m : module.modules(/*include_self=*/true))
    if (auto* c = dynamic_cast<ConvBnActImpl*>(m.get()); c && !c->folded()) c->fold_batchnorm(), ++n;
  return n;
}

bool has_folded_batchnorm(const torch::nn::Module& module) {
  for (const auto& m : module.modules(/*include_self=*/true))
    if (auto* c = dynamic_cast<const ConvBnActImpl*>(m.get()); c && c->folded()) return true;
  return false;
}

SqueezeExciteImpl::SqueezeExciteImpl(int64_t channels, int64_t squeezed, Activation act) : act_(act) {
  reduce = register_module("reduce", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, squeezed, 1)));
  expand = register_module("expand", torch::nn::Conv2d(torch::nn::Conv2dOptions(squeezed, channels, 1)));
}

torch::Tensor SqueezeExciteImpl::forward(torch::Tensor x) {
  auto s = torch::adaptive_avg_pool2d(x, {1, 1});
  s = activate(conv2d(s, reduce->weight, reduce->bias, 1, 0, 1), act_);
  s = torch::sigmoid(conv2d(s, expand->weight, expand->bias, 1, 0, 1));
  return x * s;
}

torch::Tensor drop_path(const torch::Tensor& x, double p, bool training) {
  if (!training || p <= 0.0) return x;
  const double keep = 1.0 - p;
  auto mask = torch::empty({x.size(0), 1, 1, 1}, x.options()).bernoulli_(keep);
  return x * mask / keep;
}

}  // namespace fracture::models
