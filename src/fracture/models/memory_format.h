#pragma once
// Channels-last (NHWC) weights. With them oneDNN runs the convolutions of a
// batch in its NHWC kernels, and every activation follows the weights'
// layout. Measured on the 2-core CPU (docs/benchmarks.md): for Lite0 a
// training step at batch 16 is 72% faster and the forward pass at batch 32
// 41% faster, but at batch 1 21% slower - hence a batch size threshold.
#include <torch/torch.h>

namespace fracture::models {

inline constexpr int64_t kChannelsLastMinBatch = 8;

// Converts every 4-D parameter and buffer in place (the tensors stay the same
// objects, so an optimizer built before or after keeps working).
void use_channels_last(torch::nn::Module& module);
// The policy the trainer and inference share: channels-last on the CPU for
// batches of kChannelsLastMinBatch or more, the default layout otherwise.
void use_channels_last_if_it_pays(torch::nn::Module& module, torch::Device device, int64_t batch_size);

}  // namespace fracture::models
