#include <gtest/gtest.h>

#include "fracture/models/name_map.h"
#include "fracture/models/registry.h"
#include "helpers.h"

using namespace fracture::models;

TEST(NameMap, EveryNamingRoundTripsForEfficientNets) {
  for (const char* name : {"efficientnet_lite0", "efficientnet_b0", "efficientnet_b2"}) {
    auto src = find_model(name).build(1000);
    for (auto& p : src->parameters()) p.data().normal_();
    for (auto naming : {WeightNaming::Torchvision, WeightNaming::Timm, WeightNaming::Lukemelas, WeightNaming::Fracture}) {
      const auto theirs = to_their_names(*src, naming);
      EXPECT_EQ(detect_naming(theirs, "x"), naming) << name << " " << naming_name(naming);
      auto dst = find_model(name).build(1000);
      const auto rep = load_into(*dst, to_our_names(*dst, theirs, naming), "x");
      EXPECT_TRUE(rep.unexpected.empty()) << name << " " << naming_name(naming);
      const auto a = module_state(*src), b = module_state(*dst);
      for (const auto& [k, v] : a) ASSERT_TRUE(torch::equal(v, b.at(k))) << name << " " << k;
    }
  }
}

TEST(NameMap, KnownForeignNames) {
  auto b0 = find_model("efficientnet_b0").build(1000);
  auto pairs = name_pairs(*b0, WeightNaming::Timm);
  std::map<std::string, std::string> m(pairs.begin(), pairs.end());
  EXPECT_EQ(m.at("blocks.0.0.dw.conv.weight"), "blocks.0.0.conv_dw.weight");
  EXPECT_EQ(m.at("blocks.1.0.project.bn.running_var"), "blocks.1.0.bn3.running_var");
  EXPECT_EQ(m.at("head.bn.weight"), "bn2.weight");
  pairs = name_pairs(*b0, WeightNaming::Lukemelas);
  m = {pairs.begin(), pairs.end()};
  EXPECT_EQ(m.at("blocks.1.1.expand.conv.weight"), "_blocks.2._expand_conv.weight");
  EXPECT_EQ(m.at("blocks.1.1.se.reduce.bias"), "_blocks.2._se_reduce.bias");
  pairs = name_pairs(*b0, WeightNaming::Torchvision);
  m = {pairs.begin(), pairs.end()};
  EXPECT_EQ(m.at("blocks.1.0.se.expand.weight"), "features.2.0.block.2.fc2.weight");
  EXPECT_EQ(m.at("blocks.0.0.project.conv.weight"), "features.1.0.block.2.0.weight");
  EXPECT_EQ(m.at("classifier.weight"), "classifier.1.weight");
  EXPECT_EQ(m.at("head.conv.weight"), "features.8.0.weight");
}

TEST(NameMap, NewHeadIsReinitialisedOtherMismatchesThrow) {
  auto imagenet = find_model("efficientnet_lite0").build(1000);
  auto binary = find_model("efficientnet_lite0").build(2);
  const auto rep = load_into(*binary, module_state(*imagenet), "imagenet.safetensors");
  EXPECT_EQ(rep.reinitialised.size(), 2u);  // classifier weight + bias
  auto other = find_model("efficientnet_lite1").build(1000);
  try {
    load_into(*other, module_state(*imagenet), "lite0.safetensors");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lite0.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
  }
}

TEST(NameMap, LoadsDataParallelPrefixedFiles) {
  auto src = find_model("resnet18").build(1000);
  TensorMap prefixed;
  for (auto& [k, v] : module_state(*src)) prefixed["module." + k] = v;
  fracture::testing::TempDir dir;
  save_safetensors(dir / "dp.safetensors", prefixed);
  auto dst = find_model("resnet18").build(1000);
  EXPECT_GT(load_weights_file(*dst, dir / "dp.safetensors").loaded.size(), 100u);
}
