#include "fracture/export/onnx.h"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <array>
#include <cmath>
#include <map>
#include <stdexcept>

#include "fracture/models/efficientnet.h"
#include "fracture/models/resnet.h"
#include "fracture/util/atomic_file.h"

namespace fracture::exporter {
namespace {

using models::Activation;

// A value in the graph and its shape. The exporter tracks the spatial size
// because two things are fixed at export from it: TensorFlow "SAME" pads
// (asymmetric on even sizes) and the number of cells cell pooling averages.
struct Value {
  std::string name;
  int64_t channels = 0, height = 0, width = 0;
};

// top, left, bottom, right: ONNX's order for a 2-D Conv's "pads".
using Pads = std::array<int64_t, 4>;

class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto* graph) : g_(graph) {}

  // Weights and constants, stored as little-endian raw data.
  std::string constant(const std::string& hint, const torch::Tensor& t) {
    auto* p = g_->add_initializer();
    p->set_name(unique(hint));
    auto c = t.detach().to(torch::kCPU);
    if (c.scalar_type() == torch::kLong) {
      p->set_data_type(onnx::TensorProto_DataType_INT64);
    } else {
      c = c.to(torch::kFloat);
      p->set_data_type(onnx::TensorProto_DataType_FLOAT);
      parameters_ += c.numel();
    }
    c = c.contiguous();
    for (auto d : c.sizes()) p->add_dims(d);
    p->set_raw_data(c.data_ptr(), c.numel() * c.element_size());
    return p->name();
  }
  std::string scalar(const std::string& hint, float v) { return constant(hint, torch::tensor(v)); }

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint) {
    auto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(unique(hint));
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(n->name());
    return n;
  }
  std::string op(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint) {
    return node(op, inputs, hint)->output(0);
  }

  static void attr(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto_AttributeType_INTS);
    for (auto x : v) a->add_ints(x);
  }

  int64_t parameters() const { return parameters_; }

 private:
  std::string unique(const std::string& hint) { return hint + "_" + std::to_string(counter_[hint]++); }

  onnx::GraphProto* g_;
  std::map<std::string, int> counter_;
  int64_t parameters_ = 0;
};

// The network's layers written as ONNX nodes, BatchNorm folded in.
class NetworkWriter {
 public:
  explicit NetworkWriter(GraphWriter& g) : g_(g) {}

  // conv(x) [+ bias], then BatchNorm (if given) folded into the weights:
  // w * gamma / sqrt(var + eps), and beta + (bias - mean) * that scale.
  Value conv(const Value& x, const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl* bn, Pads pads,
             const std::string& hint) {
    torch::NoGradGuard no_grad;
    auto w = conv.weight.to(torch::kDouble);
    auto b = conv.bias.defined() ? conv.bias.to(torch::kDouble) : torch::zeros({w.size(0)}, torch::kDouble);
    if (bn != nullptr) {
      const auto scale = bn->weight.to(torch::kDouble) /
                         torch::sqrt(bn->running_var.to(torch::kDouble) + bn->options.eps());
      w = w * scale.view({-1, 1, 1, 1});
      b = bn->bias.to(torch::kDouble) + (b - bn->running_mean.to(torch::kDouble)) * scale;
    }
    const int64_t k = w.size(2), stride = conv.options.stride()->at(0), groups = conv.options.groups();
    auto* n = g_.node("Conv", {x.name, g_.constant(hint + "_w", w), g_.constant(hint + "_b", b)}, hint);
    GraphWriter::attr(n, "kernel_shape", std::vector<int64_t>{k, w.size(3)});
    GraphWriter::attr(n, "strides", std::vector<int64_t>{stride, stride});
    GraphWriter::attr(n, "pads", std::vector<int64_t>(pads.begin(), pads.end()));
    GraphWriter::attr(n, "group", groups);
    return {n->output(0), w.size(0), (x.height + pads[0] + pads[2] - k) / stride + 1,
            (x.width + pads[1] + pads[3] - w.size(3)) / stride + 1};
  }

  Value activate(const Value& x, Activation act) {
    Value y = x;
    switch (act) {
      case Activation::None: return x;
      case Activation::ReLU: y.name = g_.op("Relu", {x.name}, "relu"); break;
      case Activation::ReLU6: y.name = g_.op("Clip", {x.name, zero(), six()}, "relu6"); break;
      case Activation::SiLU: y.name = g_.op("Mul", {x.name, g_.op("Sigmoid", {x.name}, "sigmoid")}, "silu"); break;
    }
    return y;
  }

  // ConvBnActImpl::forward: TF "SAME" pads for strided convs of ported TF
  // weights, symmetric (k-1)/2 otherwise.
  Value conv_bn_act(const Value& x, const models::ConvBnActImpl& m, const std::string& hint) {
    const auto& o = m.options();
    Pads pads;
    if (o.tf_same_padding && o.stride > 1) {
      const int64_t ph = models::tf_same_pad_total(x.height, o.kernel, o.stride);
      const int64_t pw = models::tf_same_pad_total(x.width, o.kernel, o.stride);
      pads = {ph / 2, pw / 2, ph - ph / 2, pw - pw / 2};
    } else {
      const int64_t p = (o.kernel - 1) / 2;
      pads = {p, p, p, p};
    }
    return activate(conv(x, *m.conv, m.bn.get(), pads, hint), o.act);
  }

  Value squeeze_excite(const Value& x, const models::SqueezeExciteImpl& se) {
    Value s{g_.op("GlobalAveragePool", {x.name}, "se_pool"), x.channels, 1, 1};
    s = activate(conv(s, *se.reduce, nullptr, {0, 0, 0, 0}, "se_reduce"), se.activation());
    s = conv(s, *se.expand, nullptr, {0, 0, 0, 0}, "se_expand");
    Value y = x;
    y.name = g_.op("Mul", {x.name, g_.op("Sigmoid", {s.name}, "se_gate")}, "se_scale");
    return y;
  }

  Value mbconv(const Value& x, const models::MBConvImpl& b) {
    Value y = b.has_expand() ? conv_bn_act(x, *b.expand, "expand") : x;
    y = conv_bn_act(y, *b.dw, "dw");
    if (b.has_se()) y = squeeze_excite(y, *b.se);
    y = conv_bn_act(y, *b.project, "project");
    if (b.residual()) y.name = g_.op("Add", {x.name, y.name}, "residual");
    return y;
  }

  Value efficientnet_features(const Value& input, const models::EfficientNetImpl& net) {
    Value x = conv_bn_act(input, *net.stem, "stem");
    for (const auto& stage : net.stages())
      for (const auto& block : stage) x = mbconv(x, *block);
    return conv_bn_act(x, *net.head_conv, "head");
  }

  // resnet.cpp pads every convolution by kernel / 2.
  Value resnet_conv(const Value& x, const torch::nn::Conv2dImpl& c, const torch::nn::BatchNorm2dImpl& bn,
                    const std::string& hint) {
    const int64_t p = c.weight.size(2) / 2;
    return conv(x, c, &bn, {p, p, p, p}, hint);
  }

  Value resnet_block(const Value& x, const models::ResNetBlockImpl& b) {
    Value y = activate(resnet_conv(x, *b.conv1, *b.bn1, "conv1"), Activation::ReLU);
    y = resnet_conv(y, *b.conv2, *b.bn2, "conv2");
    if (b.bottleneck()) y = resnet_conv(activate(y, Activation::ReLU), *b.conv3, *b.bn3, "conv3");
    Value shortcut = x;
    if (b.downsample) {
      const auto* c = b.downsample->ptr(0)->as<torch::nn::Conv2dImpl>();
      const auto* bn = b.downsample->ptr(1)->as<torch::nn::BatchNorm2dImpl>();
      shortcut = resnet_conv(x, *c, *bn, "downsample");
    }
    y.name = g_.op("Add", {y.name, shortcut.name}, "residual");
    return activate(y, Activation::ReLU);
  }

  Value resnet_features(const Value& input, const models::ResNetImpl& net) {
    Value x = activate(resnet_conv(input, *net.conv1, *net.bn1, "stem"), Activation::ReLU);
    auto* pool = g_.node("MaxPool", {x.name}, "stem_pool");
    GraphWriter::attr(pool, "kernel_shape", std::vector<int64_t>{3, 3});
    GraphWriter::attr(pool, "strides", std::vector<int64_t>{2, 2});
    GraphWriter::attr(pool, "pads", std::vector<int64_t>{1, 1, 1, 1});
    x = {pool->output(0), x.channels, (x.height - 1) / 2 + 1, (x.width - 1) / 2 + 1};
    for (const auto& layer : net.layers())
      for (const auto& m : *layer) x = resnet_block(x, *m.ptr()->as<models::ResNetBlockImpl>());
    return x;
  }

  // The architecture's head: global average pooling, then the classifier.
  std::string average_head(const Value& features, const torch::Tensor& weight, const torch::Tensor& bias) {
    const auto pooled = g_.op("GlobalAveragePool", {features.name}, "pool");
    auto* n = g_.node("Gemm", {g_.op("Flatten", {pooled}, "flatten"), g_.constant("classifier_w", weight),
                               g_.constant("classifier_b", bias)},
                      "classifier");
    GraphWriter::attr(n, "transB", int64_t{1});
    return n->output(0);
  }

  // ClassifierImpl::pool_log_odds: the image's log-odds is
  // (logsumexp(r * d) - log(cells)) / r over the cells' log-odds d, and the
  // logits are [0, that]. d = z1 - z0 is one 1x1 convolution whose weights
  // are the difference of the classifier's two rows (times r).
  std::string cell_pooling_head(const Value& features, const torch::Tensor& weight, const torch::Tensor& bias,
                                double r) {
    torch::NoGradGuard no_grad;
    const auto w = ((weight[1] - weight[0]).to(torch::kDouble) * r).view({1, -1, 1, 1});
    const auto b = ((bias[1] - bias[0]).to(torch::kDouble) * r).view({1});
    auto* c = g_.node("Conv", {features.name, g_.constant("cells_w", w), g_.constant("cells_b", b)}, "cell_log_odds");
    GraphWriter::attr(c, "kernel_shape", std::vector<int64_t>{1, 1});
    const auto rd = g_.op("Flatten", {c->output(0)}, "cells");  // [N, h*w]
    // logsumexp as max + log(sum(exp(x - max))): exact for large r * d too.
    auto* mx = g_.node("ReduceMax", {rd}, "cells_max");
    GraphWriter::attr(mx, "axes", std::vector<int64_t>{1});
    const auto sum = g_.op("ReduceSum", {g_.op("Exp", {g_.op("Sub", {rd, mx->output(0)}, "centred")}, "exp"),
                                         g_.constant("axis_1", torch::tensor({int64_t{1}}))},
                           "cells_sum");
    const auto lse = g_.op("Add", {mx->output(0), g_.op("Log", {sum}, "log")}, "logsumexp");
    const double cells = static_cast<double>(features.height * features.width);
    const auto s = g_.op("Mul", {g_.op("Sub", {lse, g_.scalar("log_cells", static_cast<float>(std::log(cells)))}, "mean"),
                                 g_.scalar("inverse_sharpness", static_cast<float>(1.0 / r))},
                         "log_odds");
    auto* cat = g_.node("Concat", {g_.op("Sub", {s, s}, "zero_logit"), s}, "logits");
    GraphWriter::attr(cat, "axis", int64_t{1});
    return cat->output(0);
  }

 private:
  std::string zero() { return zero_.empty() ? zero_ = g_.scalar("zero", 0.0f) : zero_; }
  std::string six() { return six_.empty() ? six_ = g_.scalar("six", 6.0f) : six_; }

  GraphWriter& g_;
  std::string zero_, six_;
};

void add_tensor_type(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& fixed_dims) {
  v->set_name(name);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto_DataType_FLOAT);
  auto* shape = t->mutable_shape();
  shape->add_dim()->set_dim_param("batch");
  for (auto d : fixed_dims) shape->add_dim()->set_dim_value(d);
}

void add_metadata(onnx::ModelProto& m, const std::string& key, const std::string& value) {
  auto* p = m.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

// What a user of the file needs to feed it and read it, as plain keys (and
// the whole model description under fracture.model_info).
void describe(onnx::ModelProto& m, const train::LoadedNetworks& model) {
  const auto& info = model.info;
  const auto& pre = info.preprocess;
  add_metadata(m, "fracture.format", "fracture-onnx/1");
  add_metadata(m, "architecture", info.architecture);
  add_metadata(m, "classes", nlohmann::json(info.class_names).dump());
  add_metadata(m, "input_size", std::to_string(pre.size));
  add_metadata(m, "resize", train::resize_mode_name(pre.resize));
  add_metadata(m, "clahe", pre.clahe ? "true" : "false");
  add_metadata(m, "standardise", pre.standardise ? "true" : "false");
  add_metadata(m, "mean", nlohmann::json(pre.mean).dump());
  add_metadata(m, "std", nlohmann::json(pre.std).dump());
  add_metadata(m, "channels", "grey image repeated to 3 channels");
  add_metadata(m, "pixel_scale", "pixel / 255, then (value - mean) / std per channel");
  if (info.class_names.size() == 2) {
    add_metadata(m, "threshold", nlohmann::json(info.threshold).dump());
    add_metadata(m, "threshold_rule", info.threshold_rule);
  }
  add_metadata(m, "source_sha256", model.sha256);
  add_metadata(m, "notice", "Research use only - not a medical device.");
  add_metadata(m, "fracture.model_info", info.to_json().dump());
}

// One network's logits, its nodes named apart from any other network's by the writer's counters.
std::string network_logits(NetworkWriter& w, const Value& input, models::ClassifierImpl& net,
                           const std::string& architecture) {
  if (models::has_folded_batchnorm(net))
    throw std::logic_error("export_onnx: the network's BatchNorm is already folded; export the model as loaded");
  Value features;
  if (const auto* e = dynamic_cast<const models::EfficientNetImpl*>(&net)) {
    features = w.efficientnet_features(input, *e);
  } else if (const auto* r = dynamic_cast<const models::ResNetImpl*>(&net)) {
    features = w.resnet_features(input, *r);
  } else {
    throw std::invalid_argument("ONNX export knows the EfficientNet and ResNet families, not " + architecture);
  }
  const auto params = net.named_parameters();
  const auto weight = params[net.classifier_prefix() + "weight"], bias = params[net.classifier_prefix() + "bias"];
  return net.cell_pooling() > 0 ? w.cell_pooling_head(features, weight, bias, net.cell_pooling())
                                : w.average_head(features, weight, bias);
}

}  // namespace

std::string onnx_bytes(const train::LoadedModel& model, OnnxSummary* summary) {
  return onnx_bytes(train::LoadedNetworks{{model.net}, model.info, model.sha256}, summary);
}

std::string onnx_bytes(const train::LoadedNetworks& model, OnnxSummary* summary) {
  if (model.nets.empty()) throw std::invalid_argument("export_onnx: no network");
  const int64_t size = model.info.preprocess.size, classes = model.nets[0]->num_classes();
  const size_t members = model.nets.size();

  onnx::ModelProto m;
  m.set_ir_version(onnx::IR_VERSION);
  m.set_producer_name("fracture");
  m.set_producer_version(FRACTURE_VERSION);
  m.set_doc_string("Bone fracture classifier (" + model.info.architecture +
                   (members > 1 ? ", an ensemble of " + std::to_string(members) + " networks" : std::string()) +
                   "). Input: [batch, 3, " + std::to_string(size) + ", " + std::to_string(size) +
                   "] float, preprocessed as the metadata says. Outputs: logits and probabilities [batch, " +
                   std::to_string(classes) + "]. Research use only - not a medical device.");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOnnxOpset);
  auto* graph = m.mutable_graph();
  graph->set_name(model.info.architecture);

  GraphWriter g(graph);
  NetworkWriter w(g);
  const Value input{"input", 3, size, size};
  std::string logits;
  if (members == 1) {
    logits = network_logits(w, input, *model.nets[0], model.info.architecture);
  } else {  // as the Predictor combines them: the mean of the members' log-probabilities
    std::vector<std::string> log_p;
    for (const auto& net : model.nets) {
      auto* n = g.node("LogSoftmax", {network_logits(w, input, *net, model.info.architecture)}, "member_log_p");
      GraphWriter::attr(n, "axis", int64_t{1});
      log_p.push_back(n->output(0));
    }
    const std::string sum = g.op("Sum", log_p, "member_sum");
    logits = g.op("Mul", {sum, g.scalar("one_over_members", 1.0f / static_cast<float>(members))}, "member_mean");
  }
  auto* id = graph->add_node();  // name the outputs plainly
  id->set_op_type("Identity");
  id->set_name("logits");
  id->add_input(logits);
  id->add_output("logits");
  auto* softmax = graph->add_node();
  softmax->set_op_type("Softmax");
  softmax->set_name("probabilities");
  softmax->add_input("logits");
  softmax->add_output("probabilities");
  GraphWriter::attr(softmax, "axis", int64_t{1});

  add_tensor_type(graph->add_input(), "input", {3, size, size});
  add_tensor_type(graph->add_output(), "logits", {classes});
  add_tensor_type(graph->add_output(), "probabilities", {classes});
  describe(m, model);

  try {
    onnx::checker::check_model(m);
  } catch (const std::exception& e) {
    throw std::logic_error(std::string("the exported graph fails ONNX's checker (a bug in fracture): ") + e.what());
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw std::runtime_error("could not serialise the ONNX model");
  if (summary != nullptr) {
    *summary = {size, classes, graph->node_size(), g.parameters(), kOnnxOpset, bytes.size()};
  }
  return bytes;
}

OnnxSummary export_onnx(const std::string& model_path, const std::string& out_path) {
  const auto model = train::load_networks(model_path);
  for (const auto& net : model.nets) net->eval();
  OnnxSummary summary;
  util::write_file_atomic(out_path, onnx_bytes(model, &summary));
  return summary;
}

}  // namespace fracture::exporter
