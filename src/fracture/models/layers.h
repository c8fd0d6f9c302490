#pragma once
// Building blocks shared by the EfficientNet family.
#include <torch/torch.h>

namespace fracture::models {

enum class Activation { None, ReLU, ReLU6, SiLU };
// Without gradients it works in place on x (callers pass fresh outputs).
torch::Tensor activate(torch::Tensor x, Activation act);

// torch::conv2d with square stride/padding and no dilation, except that a
// single CPU image goes to oneDNN directly. Why: for a batch of 1, ATen sends
// small 1x1 convolutions (the late EfficientNet stages) to its im2col + BLAS
// path, which runs on one thread and, with the reference BLAS Debian's
// LibTorch uses, takes ~5 ms a layer: two thirds of a Lite0 forward pass.
// oneDNN computes the same layer in well under a millisecond (see
// docs/benchmarks.md). Larger batches already take the oneDNN path.
torch::Tensor conv2d(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias, int64_t stride,
                     int64_t padding, int64_t groups);

// Conv (no bias) -> BatchNorm -> activation. With `tf_same_padding`, padding
// follows TensorFlow's "SAME" rule (output = ceil(input / stride), the extra
// pixel going to the bottom/right), which weights ported from TF need: for a
// stride-2 conv on an even-sized input it differs from PyTorch's symmetric pad.
// TensorFlow's "SAME" padding along one axis: the total pad that makes the
// output ceil(size / stride); the extra pixel goes to the bottom/right.
int64_t tf_same_pad_total(int64_t size, int64_t kernel, int64_t stride);

struct ConvBnActOptions {
  int64_t in, out, kernel = 1, stride = 1, groups = 1;
  Activation act = Activation::SiLU;
  bool tf_same_padding = false;
  double bn_eps = 1e-5;
  double bn_momentum = 0.1;
};

class ConvBnActImpl : public torch::nn::Module {
 public:
  explicit ConvBnActImpl(const ConvBnActOptions& o);
  torch::Tensor forward(torch::Tensor x);
  // For inference: scales the conv weights by gamma / sqrt(var + eps) and
  // keeps beta - mean * scale as a bias, so BatchNorm's separate pass over
  // the activations disappears. The module then computes the same function
  // as in eval mode, in training mode too (so do not train it afterwards).
  void fold_batchnorm();
  bool folded() const { return folded_bias_.defined(); }
  // The weight and bias this layer computes with in eval mode, BatchNorm
  // folded in (whether or not fold_batchnorm ran); NCHW-contiguous, for
  // reading only (they may share the layer's storage).
  std::pair<torch::Tensor, torch::Tensor> inference_weight_and_bias() const;
  const ConvBnActOptions& options() const { return opt_; }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};

 private:
  ConvBnActOptions opt_;
  bool dynamic_pad_;
  int64_t pad_;
  torch::Tensor folded_bias_;
};
TORCH_MODULE(ConvBnAct);

// Squeeze-and-excitation: global average -> reduce (1x1 conv) -> act ->
// expand (1x1 conv) -> sigmoid gate on the channels.
class SqueezeExciteImpl : public torch::nn::Module {
 public:
  SqueezeExciteImpl(int64_t channels, int64_t squeezed, Activation act);
  torch::Tensor forward(torch::Tensor x);
  Activation activation() const { return act_; }
  torch::nn::Conv2d reduce{nullptr}, expand{nullptr};

 private:
  Activation act_;
};
TORCH_MODULE(SqueezeExcite);

// Folds every ConvBnAct inside `module` (see ConvBnActImpl::fold_batchnorm);
// returns how many were folded.
int fold_batchnorms(torch::nn::Module& module);
// Whether any ConvBnAct inside `module` has been folded: such a network's
// weights no longer match its BatchNorm buffers, so it must not be saved.
bool has_folded_batchnorm(const torch::nn::Module& module);

// Stochastic depth: in training, drops the residual branch for whole samples
// with probability p and rescales the survivors by 1/(1-p).
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

}  // namespace fracture::models
