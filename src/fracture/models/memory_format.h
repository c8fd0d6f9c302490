#pragma once
// Channels-last (NHWC) weights. With them oneDNN runs the convolutions of a
// batch in its NHWC kernels, and every activation follows the weights'
// layout. Measured on the 2-core CPU (docs/benchmarks.md): for Lite0 a
// training step at batch 16 is 72% faster and the forward pass at batch 32
// 41% faster; at batch 1, where models::conv2d calls oneDNN directly, it
// is no slower.
#include <torch/torch.h>

namespace fracture::models {

// Converts every 4-D parameter and buffer in place (the tensors stay the same
// objects, so an optimizer built before or after keeps working).
void use_channels_last(torch::nn::Module& module);
// The policy the trainer and inference share: channels-last on the CPU, the
// default layout elsewhere (cuDNN picks its own).
void use_channels_last_if_it_pays(torch::nn::Module& module, torch::Device device);

}  // namespace fracture::models
