// The ONNX file's form: what it declares and carries, and what the exporter
// refuses. Its numbers against ONNX Runtime: tests/reference/onnx_reference_test.cpp.
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <map>

#include <nlohmann/json.hpp>

#include "cli/run_cli.h"
#include "fracture/export/onnx.h"
#include "fracture/models/registry.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"

using namespace fracture;
namespace ft = fracture::testing;

namespace {

const std::string kShipped = std::string(FRACTURE_SOURCE_DIR) + "/model/fracatlas.safetensors";

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromString(bytes));
  return m;
}

std::map<std::string, std::string> metadata(const onnx::ModelProto& m) {
  std::map<std::string, std::string> out;
  for (const auto& p : m.metadata_props()) out[p.key()] = p.value();
  return out;
}

std::vector<std::string> dims(const onnx::ValueInfoProto& v) {
  std::vector<std::string> out;
  for (const auto& d : v.type().tensor_type().shape().dim())
    out.push_back(d.has_dim_param() ? d.dim_param() : std::to_string(d.dim_value()));
  return out;
}

}  // namespace

TEST(OnnxExport, DeclaresInputsOutputsAndThePreprocessing) {
  const auto loaded = train::load_networks(kShipped);  // an ensemble since 2026-12-01
  exporter::OnnxSummary s;
  const auto m = parse(exporter::onnx_bytes(loaded, &s));
  EXPECT_EQ(m.opset_import(0).version(), exporter::kOnnxOpset);
  ASSERT_EQ(m.graph().input_size(), 1);
  EXPECT_EQ(dims(m.graph().input(0)), (std::vector<std::string>{"batch", "3", "384", "384"}));
  ASSERT_EQ(m.graph().output_size(), 2);
  EXPECT_EQ(m.graph().output(0).name(), "logits");
  EXPECT_EQ(m.graph().output(1).name(), "probabilities");
  EXPECT_EQ(dims(m.graph().output(1)), (std::vector<std::string>{"batch", "2"}));

  auto md = metadata(m);
  EXPECT_EQ(md["input_size"], "384");
  EXPECT_EQ(md["resize"], "stretch");
  EXPECT_EQ(nlohmann::json::parse(md["classes"]), nlohmann::json(loaded.info.class_names));
  EXPECT_DOUBLE_EQ(std::stod(md["threshold"]), loaded.info.threshold);
  EXPECT_EQ(nlohmann::json::parse(md["mean"]).get<std::vector<float>>()[0], loaded.info.preprocess.mean[0]);
  EXPECT_EQ(nlohmann::json::parse(md["std"]).get<std::vector<float>>()[2], loaded.info.preprocess.std[2]);
  EXPECT_EQ(md["source_sha256"], loaded.sha256);
  EXPECT_NE(md["notice"].find("not a medical device"), std::string::npos);
  EXPECT_EQ(train::ModelInfo::from_json(nlohmann::json::parse(md["fracture.model_info"]), "metadata").threshold,
            loaded.info.threshold);

  // Lite0: 3.4M parameters (BatchNorm folded, none left) for each network.
  const auto networks = static_cast<int64_t>(loaded.nets.size());
  EXPECT_GT(s.parameters, 3'000'000 * networks);
  EXPECT_LT(s.parameters, 5'000'000 * networks);
  for (const auto& n : m.graph().node()) EXPECT_NE(n.op_type(), "BatchNormalization");
  EXPECT_EQ(s.nodes, m.graph().node_size());
}

TEST(OnnxExport, RefusesWhatItCannotWrite) {
  train::LoadedModel vgg;
  vgg.net = models::find_model("vgg16").build(2);
  vgg.info.architecture = "vgg16";
  vgg.info.class_names = {"a", "b"};
  try {
    exporter::onnx_bytes(vgg);
    FAIL() << "VGG was exported";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("vgg16"), std::string::npos) << e.what();
  }
}

TEST(OnnxExport, CliWritesTheFileAndSaysWhatItIs) {
  ft::TempDir dir;
  const auto out = dir / "m.onnx";
  const auto r = ft::run_cli("export -o " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("input [batch, 3, 384, 384], 2 classes"), std::string::npos) << r.out;
  const auto m = parse(util::read_file(out));
  EXPECT_EQ(metadata(m)["architecture"], "efficientnet_lite0");

  // A file that is not a model: named, non-zero, nothing written, stdout empty.
  ft::write_image(dir / "x.png", ft::synthetic_xray(32, 32, 1));
  const auto bad = ft::run_cli("export -m " + (dir / "x.png") + " -o " + (dir / "bad.onnx"));
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("x.png"), std::string::npos) << bad.err;
  EXPECT_TRUE(bad.out.empty()) << bad.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.onnx"));
}
