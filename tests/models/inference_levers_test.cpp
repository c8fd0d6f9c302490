#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fracture/models/layers.h"
#include "fracture/models/memory_format.h"
#include "fracture/models/weights_io.h"
#include "fracture/models/registry.h"

using namespace fracture::models;

// Folding BatchNorm into the convolutions must not change what the network computes.
TEST(FoldBatchnorm, SameLogitsAsEvalMode) {
  torch::manual_seed(3);
  auto net = find_model("efficientnet_lite0").build(2);
  {
    torch::NoGradGuard g;  // non-trivial BN statistics, as after training
    for (auto& item : net->named_buffers()) {
      const auto& name = item.key();
      if (name.find("running_mean") != std::string::npos) item.value().normal_(0, 0.2);
      else if (name.find("running_var") != std::string::npos) item.value().uniform_(0.5, 2.0);
    }
    for (auto& item : net->named_parameters())
      if (item.key().find("bn.") != std::string::npos)
        item.value().normal_(item.key().find("weight") != std::string::npos ? 1.0 : 0.0, 0.1);
  }
  net->eval();
  const auto x = torch::randn({2, 3, 97, 130});
  torch::NoGradGuard g;
  const auto before = net->forward(x);
  const int folded = fold_batchnorms(*net);
  EXPECT_GT(folded, 30);
  EXPECT_EQ(fold_batchnorms(*net), 0);  // idempotent
  const auto after = net->forward(x);
  EXPECT_TRUE(torch::allclose(before, after, 1e-4, 1e-4)) << (before - after).abs().max().item<float>();
}

// Channels-last weights: same function, and a checkpoint written from them
// holds ordinary (NCHW) tensors.
TEST(ChannelsLast, SameLogitsAndPlainCheckpoint) {
  torch::manual_seed(4);
  auto net = find_model("efficientnet_lite0").build(2);
  net->eval();
  const auto x = torch::randn({3, 3, 96, 96});
  torch::NoGradGuard g;
  const auto before = net->forward(x);
  use_channels_last(*net);
  EXPECT_TRUE(net->parameters()[0].is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::allclose(before, net->forward(x), 1e-4, 1e-4));
  const auto bytes = serialize_safetensors(module_state(*net));
  const auto loaded = parse_safetensors(bytes, "memory").tensors;
  for (const auto& [name, t] : module_state(*net)) EXPECT_TRUE(torch::equal(t, loaded.at(name))) << name;
}
