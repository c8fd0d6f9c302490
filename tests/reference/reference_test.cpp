// Our models against PyTorch: identical weights must give identical logits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "fracture/data/image_io.h"
#include "fracture/data/transforms.h"
#include "fracture/models/name_map.h"
#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"

using namespace fracture::models;

namespace {

std::string ref_file(const std::string& name) {
  const char* dir = std::getenv("FRACTURE_REFERENCE_DIR");
  return std::string(dir ? dir : "reference") + "/" + name;
}

// max |a - b| / max |b|: the "relative" tolerance of the foundation issue.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

void expect_matches_torchvision(const std::string& model_name, const std::string& file_stem) {
  auto model = find_model(model_name).build(1000);
  const auto report = load_weights_file(*model, ref_file(file_stem + "_torchvision.safetensors"));
  EXPECT_TRUE(report.reinitialised.empty());
  EXPECT_TRUE(report.unexpected.empty()) << report.unexpected.front();
  model->eval();
  auto io = load_safetensors(ref_file(file_stem + "_io.safetensors")).tensors;
  torch::NoGradGuard g;
  const auto logits = model->forward(io.at("input"));
  EXPECT_LE(relative_error(logits, io.at("logits")), 1e-4) << model_name;
}

}  // namespace

TEST(Reference, EfficientNetB0MatchesTorchvision) { expect_matches_torchvision("efficientnet_b0", "efficientnet_b0"); }
// B2 scales width (1.1) and depth (1.2): stage 1 gets two depthwise-separable blocks.
TEST(Reference, EfficientNetB2MatchesTorchvision) { expect_matches_torchvision("efficientnet_b2", "efficientnet_b2"); }
TEST(Reference, ResNet18MatchesTorchvision) { expect_matches_torchvision("resnet18", "resnet18"); }
TEST(Reference, ResNet50MatchesTorchvision) { expect_matches_torchvision("resnet50", "resnet50"); }
TEST(Reference, VGG16MatchesTorchvision) { expect_matches_torchvision("vgg16", "vgg16"); }

TEST(Reference, ZipStateDictEqualsSafetensors) {
  for (const std::string stem : {"efficientnet_b0", "resnet18"}) {
    const auto zip = load_tensor_file(ref_file(stem + "_torchvision_zip.pth"));
    const auto st = load_safetensors(ref_file(stem + "_torchvision.safetensors")).tensors;
    ASSERT_EQ(zip.size(), st.size()) << stem;
    for (const auto& [k, v] : st) {
      ASSERT_TRUE(zip.count(k)) << k;
      EXPECT_TRUE(torch::equal(zip.at(k), v)) << k;
    }
  }
}

TEST(Reference, TorchvisionNamesRoundTrip) {
  // Exporting under torchvision's names gives exactly torchvision's key set.
  auto model = find_model("efficientnet_b0").build(1000);
  load_weights_file(*model, ref_file("efficientnet_b0_torchvision.safetensors"));
  const auto exported = to_their_names(*model, WeightNaming::Torchvision);
  const auto original = load_safetensors(ref_file("efficientnet_b0_torchvision.safetensors")).tensors;
  ASSERT_EQ(exported.size(), original.size());
  for (const auto& [k, v] : original) {
    ASSERT_TRUE(exported.count(k)) << k;
    EXPECT_TRUE(torch::equal(exported.at(k), v)) << k;
  }
}

// (c) Lite0 with the real ImageNet weights against the independent
// implementation on PyPI (efficientnet-lite-pytorch), at 224 and at an odd
// size where TF "SAME" padding is asymmetric.
TEST(Reference, Lite0MatchesIndependentImplementation) {
  auto model = create_model("efficientnet_lite0", {1000, true, ""});
  model->eval();
  torch::NoGradGuard g;
  for (const std::string size : {"224", "231"}) {
    auto io = load_safetensors(ref_file("lite0_" + size + "_io.safetensors")).tensors;
    EXPECT_LE(relative_error(model->forward(io.at("input")), io.at("logits")), 1e-4) << size;
  }
}

// (b) Real photographs shipped by Debian's python3-skimage get their ImageNet class.
TEST(Reference, Lite0ClassifiesRealPhotographs) {
  const std::string dir = "/usr/lib/python3/dist-packages/skimage/data/";
  ASSERT_TRUE(std::filesystem::exists(dir + "chelsea.png")) << "python3-skimage is not installed (scripts/setup.sh)";
  auto model = create_model("efficientnet_lite0", {1000, true, ""});
  model->eval();
  const auto& spec = find_model("efficientnet_lite0");
  fracture::data::PreprocessOptions pre;
  pre.size = spec.input_size;
  pre.mean = spec.mean;
  pre.std = spec.std;
  auto top5 = [&](const std::string& file) {
    auto img = fracture::data::decode_image(dir + file, {true, 0});
    auto x = fracture::data::to_tensor(fracture::data::preprocess(img.pixels, pre), pre.mean, pre.std).unsqueeze(0);
    torch::NoGradGuard g;
    auto idx = std::get<1>(model->forward(x).topk(5, 1));
    return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + 5);
  };
  auto in = [](int64_t v, std::initializer_list<int64_t> set) { return std::find(set.begin(), set.end(), v) != set.end(); };
  const auto cat = top5("chelsea.png");  // a tabby-like cat
  EXPECT_TRUE(in(cat[0], {281, 282, 285})) << "top-1 " << cat[0];  // tabby, tiger cat, Egyptian cat
  const auto coffee = top5("coffee.png");
  EXPECT_EQ(coffee[0], 967) << "espresso";
  const auto moto = top5("motorcycle_left.png");
  EXPECT_TRUE(in(moto[0], {665, 670})) << "top-1 " << moto[0];  // moped, motor scooter
  const auto rocket = top5("rocket.jpg");
  EXPECT_TRUE(std::find(rocket.begin(), rocket.end(), 812) != rocket.end()) << "space shuttle in top 5";
}

// The builder's Lite1/Lite2 scaling must fit the published checkpoints exactly:
// every tensor present, every shape right, nothing left over.
TEST(Reference, LiteCheckpointsFitTheirArchitectures) {
  for (const char* name : {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}) {
    auto model = find_model(name).build(1000);
    const auto rep = load_weights_file(*model, imagenet_weights_path(find_model(name)));
    EXPECT_TRUE(rep.unexpected.empty()) << name;
    EXPECT_TRUE(rep.reinitialised.empty()) << name;
    EXPECT_EQ(rep.loaded.size(), module_state(*model).size()) << name;
  }
}
