#include <gtest/gtest.h>

#include "fracture/models/efficientnet.h"
#include "fracture/models/registry.h"

using namespace fracture::models;

namespace {
int64_t count_params(ClassifierImpl& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}
}  // namespace

// Parameter counts published for torchvision's models and the TF Lite release.
TEST(Models, ParameterCountsMatchPublishedArchitectures) {
  const std::pair<const char*, int64_t> known[] = {
      {"efficientnet_b0", 5288548}, {"efficientnet_b1", 7794184}, {"efficientnet_b3", 12233232},
      {"efficientnet_b6", 43040704}, {"resnet18", 11689512},      {"resnet50", 25557032},
      {"vgg16", 138357544},         {"efficientnet_lite0", 4652008},
  };
  for (const auto& [name, params] : known) {
    auto m = find_model(name).build(1000);
    EXPECT_EQ(count_params(*m), params) << name;
  }
}

TEST(Models, EveryRegisteredModelRunsForwardAndBackward) {
  for (const auto& spec : model_registry()) {
    if (spec.name == "efficientnet_b7" || spec.name == "vgg16") continue;  // large; same code paths as b6 / checked by reference test
    auto m = spec.build(3);
    m->train();
    auto x = torch::randn({2, 3, 64, 64});
    auto y = m->forward(x);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 3})) << spec.name;
    y.sum().backward();
    for (const auto& p : m->parameters()) ASSERT_TRUE(p.grad().defined()) << spec.name;
  }
}

TEST(Models, StagesComposeToForwardAndHeadResets) {
  for (const char* name : {"efficientnet_lite0", "resnet18"}) {
    auto m = find_model(name).build(1000);
    m->eval();
    torch::NoGradGuard g;
    auto x = torch::randn({1, 3, 96, 96});
    const int split = m->num_stages() - 2;
    auto mid = m->forward_stages(x, 0, split);
    auto feats = m->forward_stages(mid, split, m->num_stages());
    EXPECT_EQ(feats.size(1), m->num_features());
    EXPECT_TRUE(torch::allclose(m->forward_head(feats), m->forward(x), 1e-5, 1e-6)) << name;
    m->reset_classifier(2);
    EXPECT_EQ(m->forward(x).size(1), 2);
    EXPECT_EQ(m->num_classes(), 2);
    for (int i = 0; i < m->num_stages(); ++i) EXPECT_FALSE(m->stage_modules(i).empty());
  }
}

TEST(Models, CellPoolingIsASoftMaximumOverTheCellsLogOdds) {
  for (const char* name : {"efficientnet_lite0", "resnet18"}) {
    auto m = find_model(name).build(2);
    m->eval();
    torch::NoGradGuard g;
    auto feats = torch::randn({2, m->num_features(), 3, 4});
    const auto avg = m->forward_head(feats);  // cell pooling off: the architecture's head
    const auto d = m->cell_log_odds(feats);   // [2, 3, 4]
    ASSERT_EQ(d.sizes(), (std::vector<int64_t>{2, 3, 4}));
    // The classifier is linear, so the mean cell log-odds is the average head's log-odds.
    EXPECT_TRUE(torch::allclose(d.mean({1, 2}), avg.select(1, 1) - avg.select(1, 0), 1e-4, 1e-5)) << name;
    const auto pooled_log_odds = [&](double r) {
      m->set_cell_pooling(r);
      const auto z = m->forward_head(feats);
      EXPECT_TRUE(torch::allclose(torch::softmax(z, 1).select(1, 1), torch::sigmoid(z.select(1, 1) - z.select(1, 0))));
      return z.select(1, 1) - z.select(1, 0);
    };
    // Gentle pooling is near the mean; sharp pooling near the strongest cell (within log(12) / r).
    EXPECT_TRUE(torch::allclose(pooled_log_odds(1e-3), d.mean({1, 2}), 1e-2, 1e-2)) << name;
    const auto max = std::get<0>(d.flatten(1).max(1));
    const auto sharp = pooled_log_odds(200);
    EXPECT_TRUE((sharp <= max + 1e-5).all().item<bool>() && (sharp >= max - std::log(12.0) / 200 - 1e-5).all().item<bool>())
        << name << sharp << max;
    // r = 4 by its definition.
    const auto by_hand = (torch::logsumexp(4 * d.flatten(1), 1) - std::log(12.0)) / 4;
    EXPECT_TRUE(torch::allclose(pooled_log_odds(4), by_hand, 1e-5, 1e-5)) << name;
    EXPECT_THROW(m->set_cell_pooling(-1), std::invalid_argument);
  }
  EXPECT_THROW(find_model("resnet18").build(3)->set_cell_pooling(4), std::invalid_argument);
  EXPECT_THROW(find_model("vgg16").build(2)->cell_logits(torch::randn({1, 512, 7, 7})), std::invalid_argument);
}

TEST(Models, LiteScalingKeepsStemHeadAndEndStages) {
  auto lite2 = std::dynamic_pointer_cast<EfficientNetImpl>(find_model("efficientnet_lite2").build(1000));
  ASSERT_TRUE(lite2);
  EXPECT_EQ(lite2->stem->conv->options.out_channels(), 32);
  EXPECT_EQ(lite2->num_features(), 1280);
  const auto layout = lite2->layout();
  int first = 0, last = 0;
  for (const auto& b : layout) first += b.stage == 0, last += b.stage == 6;
  EXPECT_EQ(first, 1);
  EXPECT_EQ(last, 1);
  EXPECT_EQ(layout.size(), 21u);  // 1+ceil(2.4)+ceil(2.4)+ceil(3.6)+ceil(3.6)+ceil(4.8)+1
}

TEST(Models, TfSamePaddingPadsBottomRightOnEvenInput) {
  // A 3x3 stride-2 conv on a 4x4 input: TF pads 0 top/left and 1 bottom/right.
  ConvBnAct tf(ConvBnActOptions{1, 1, 3, 2, 1, Activation::None, true, 1e-5, 0.1});
  tf->eval();
  torch::NoGradGuard g;
  tf->conv->weight.fill_(1.0);
  auto x = torch::arange(16, torch::kFloat32).view({1, 1, 4, 4});
  auto y = tf->forward(x);
  auto expected = torch::conv2d(torch::constant_pad_nd(x, {0, 1, 0, 1}), torch::ones({1, 1, 3, 3}), {}, 2);
  EXPECT_TRUE(torch::allclose(y, expected / std::sqrt(1 + 1e-5), 1e-4));
}

TEST(Models, RoundChannelsFollowsTfRule) {
  EXPECT_EQ(round_channels(32, 1.1), 32);
  EXPECT_EQ(round_channels(16, 1.1), 16);
  EXPECT_EQ(round_channels(1280, 1.8), 2304);
  EXPECT_EQ(round_channels(40, 1.4), 56);
  EXPECT_EQ(round_channels(24, 1.4), 32);
  EXPECT_EQ(decode_stage("r3_k5_s2_e6_c112").channels, 112);
}

TEST(Registry, UnknownNamesAndMissingWeightsExplainThemselves) {
  try {
    find_model("efficientnet_b9");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("efficientnet_lite0"), std::string::npos);
  }
  try {
    create_model("resnet18", {2, true, ""});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--weights"), std::string::npos);
  }
  setenv("FRACTURE_WEIGHTS_DIR", "/nonexistent-weights", 1);
  try {
    create_model("efficientnet_lite0", {2, true, ""});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("scripts/setup.sh"), std::string::npos);
  }
  unsetenv("FRACTURE_WEIGHTS_DIR");
}
