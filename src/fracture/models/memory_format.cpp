#include "fracture/models/memory_format.h"

namespace fracture::models {

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(b.contiguous(torch::MemoryFormat::ChannelsLast));
}

void use_channels_last_if_it_pays(torch::nn::Module& module, torch::Device device) {
  if (device.is_cpu()) use_channels_last(module);
}

}  // namespace fracture::models
