#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fracture/models/layers.h"
#include "fracture/models/memory_format.h"
#include "fracture/models/weights_io.h"
#include "fracture/models/registry.h"
#include "fracture/train/inference.h"

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

// A single CPU image goes to oneDNN directly (models::conv2d): same values
// and gradients as ATen's own choice, for every shape the networks use.
TEST(Conv2dOneImage, SameValuesAndGradientsAsTorchConv2d) {
  torch::manual_seed(5);
  struct Case { int64_t in, out, kernel, stride, groups; bool bias; };
  for (const Case c : {Case{32, 16, 1, 1, 1, false}, Case{320, 1280, 1, 1, 1, false}, Case{24, 24, 3, 2, 24, false},
                       Case{3, 32, 3, 2, 1, false}, Case{40, 10, 1, 1, 1, true}, Case{16, 8, 5, 1, 2, true}}) {
    auto x = torch::randn({1, c.in, 13, 11}, torch::requires_grad());
    auto w = torch::randn({c.out, c.in / c.groups, c.kernel, c.kernel}, torch::requires_grad());
    auto b = c.bias ? torch::randn({c.out}, torch::requires_grad()) : torch::Tensor();
    const int64_t pad = (c.kernel - 1) / 2;
    auto ours = conv2d(x, w, b, c.stride, pad, c.groups);
    auto ref = torch::conv2d(x, w, b, c.stride, pad, 1, c.groups);
    ASSERT_EQ(ours.sizes(), ref.sizes());
    EXPECT_TRUE(torch::allclose(ours, ref, 1e-4, 1e-4)) << c.in << "->" << c.out << " k" << c.kernel;
    auto g = torch::randn_like(ref);
    auto grads = torch::autograd::grad({ours}, {x, w}, {g});
    auto ref_grads = torch::autograd::grad({ref}, {x, w}, {g});
    for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::allclose(grads[i], ref_grads[i], 1e-3, 1e-3)) << i;
  }
}

// The whole network gives an image the same logits alone as inside a batch
// (batch 1 takes the oneDNN route for every convolution, batch 2 ATen's).
TEST(Conv2dOneImage, NetworkAgreesWithBatchedForward) {
  torch::manual_seed(6);
  auto net = find_model("efficientnet_lite0").build(2);
  net->eval();
  torch::NoGradGuard g;
  const auto x = torch::randn({2, 3, 128, 96});
  const auto batched = net->forward(x);
  for (int64_t i = 0; i < 2; ++i) {
    const auto alone = net->forward(x.slice(0, i, i + 1));
    EXPECT_TRUE(torch::allclose(alone[0], batched[i], 1e-4, 1e-4)) << (alone[0] - batched[i]).abs().max().item<float>();
  }
}

// Slicing a CPU batch into a few images per forward pass changes nothing but speed.
TEST(ForwardInChunks, SameAsOneForwardPass) {
  torch::manual_seed(7);
  auto net = find_model("efficientnet_lite0").build(2);
  fracture::train::prepare_for_inference(*net, torch::kCPU);
  torch::NoGradGuard g;
  EXPECT_EQ(fracture::train::cpu_images_per_forward(224, 224), 4);
  EXPECT_EQ(fracture::train::cpu_images_per_forward(384, 384), 1);
  const auto x = torch::randn({7, 3, 224, 224});
  int calls = 0;
  const auto chunked = fracture::train::forward_in_chunks(
      [&](const torch::Tensor& part) { ++calls; return net->forward(part); }, x);
  EXPECT_EQ(calls, 2);  // 4 + 3 images
  const auto whole = net->forward(x);
  EXPECT_TRUE(torch::allclose(chunked, whole, 1e-4, 1e-4)) << (chunked - whole).abs().max().item<float>();
}
