#include "fracture/models/onednn_body.h"

#include <stdexcept>

#include "fracture/models/efficientnet.h"

#ifdef FRACTURE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <vector>
#endif

namespace fracture::models {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  throw std::invalid_argument("precision '" + name + "': expected fp32 or bf16");
}

std::string precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

namespace {

// The network's reason not to be fused, whatever the build.
std::string network_unsupported(const ClassifierImpl& net) {
  const auto* lite = dynamic_cast<const EfficientNetImpl*>(&net);
  if (!lite) return "only EfficientNets run as a oneDNN program";
  if (lite->config().squeeze_excite) return "squeeze-excitation is not fused (EfficientNet-Lite has none)";
  const auto act = lite->config().act;
  if (act != Activation::ReLU6 && act != Activation::ReLU && act != Activation::None)
    return "only ReLU6 and ReLU are fused (EfficientNet-Lite's)";
  return "";
}

}  // namespace

#ifndef FRACTURE_WITH_ONEDNN

std::string onednn_body_unsupported(const ClassifierImpl& net, Precision) {
  if (auto why = network_unsupported(net); !why.empty()) return why;
  return "this build has no oneDNN (libdnnl-dev was not found at configure time)";
}
struct OneDnnBody::Program {};
OneDnnBody::OneDnnBody(const ClassifierImpl& net, Precision precision) : net_(net), precision_(precision) {
  throw std::invalid_argument(onednn_body_unsupported(net, precision));
}
OneDnnBody::~OneDnnBody() = default;
torch::Tensor OneDnnBody::features(const torch::Tensor&) { throw std::logic_error("no oneDNN in this build"); }

#else

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

bool cpu_runs_bf16() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());  // respects ONEDNN_MAX_CPU_ISA
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;
}

}  // namespace

std::string onednn_body_unsupported(const ClassifierImpl& net, Precision precision) {
  if (auto why = network_unsupported(net); !why.empty()) return why;
  if (precision == Precision::bf16 && !cpu_runs_bf16())
    return "bf16 needs a CPU with AVX512-BF16 or AMX, and this one (as oneDNN sees it) has neither";
  return "";
}

// One input shape's program: a list of primitives over activations that share
// a few buffers (an activation's buffer is reused once nothing reads it).
struct OneDnnBody::Program {
  struct Op {
    dnnl::primitive primitive;
    int src = 0, dst = 0;  // activation indices
    dnnl::memory weights, bias;  // convolutions only
    bool conv = false;
  };
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  dt kind = dt::f32;
  std::vector<dnnl::memory::desc> descs;  // per activation; 0 is the caller's input
  std::vector<dnnl::memory> acts;         // made by place_activations
  std::vector<dnnl::memory> buffers;      // what the activations share
  std::vector<Op> ops;

  int add_activation(const dnnl::memory::desc& d) {
    descs.push_back(d);
    return static_cast<int>(descs.size()) - 1;
  }

  // `src` in the layout `want`: itself, or a reorder into a new activation.
  int in_layout(int src, const dnnl::memory::desc& want) {
    if (descs[static_cast<size_t>(src)] == want) return src;
    Op op;
    op.primitive = dnnl::reorder(dnnl::reorder::primitive_desc(engine, descs[static_cast<size_t>(src)], engine, want));
    op.src = src;
    op.dst = add_activation(want);
    ops.push_back(std::move(op));
    return ops.back().dst;
  }

  // conv + folded BatchNorm + activation reading `src`; returns its output.
  // With residual_into >= 0 the result is added into that activation (the
  // block's input, which nothing reads afterwards) instead.
  int add_conv(const ConvBnActImpl& layer, int src, int residual_into) {
    const auto& o = layer.options();
    const auto dims = descs[static_cast<size_t>(src)].dims();  // N, C, H, W
    const int64_t n = dims[0], h = dims[2], w = dims[3], k = o.kernel, s = o.stride;
    int64_t top = (k - 1) / 2, bottom = top, left = top, right = top;
    if (o.tf_same_padding && s > 1) {  // as ConvBnActImpl pads: the extra pixel bottom/right
      const int64_t ph = tf_same_pad_total(h, k, s), pw = tf_same_pad_total(w, k, s);
      top = ph / 2, bottom = ph - top, left = pw / 2, right = pw - left;
    }
    const int64_t oh = (h + top + bottom - k) / s + 1, ow = (w + left + right - k) / s + 1;
    const auto [weight, bias] = layer.inference_weight_and_bias();
    const dnnl::memory::dims wdims = o.groups == 1 ? dnnl::memory::dims{o.out, o.in, k, k}
                                                    : dnnl::memory::dims{o.groups, o.out / o.groups, o.in / o.groups, k, k};
    const dnnl::memory::desc src_any({n, o.in, h, w}, kind, tag::any), weights_any(wdims, kind, tag::any),
        bias_md({o.out}, dt::f32, tag::x), dst_any({n, o.out, oh, ow}, kind, tag::any);
    dnnl::post_ops post;
    if (residual_into >= 0) post.append_sum(1.f);
    if (o.act == Activation::ReLU6) post.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, 0.f, 6.f);
    if (o.act == Activation::ReLU) post.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post);
    const dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src_any, weights_any, bias_md, dst_any, {s, s}, {top, left},
                                            {bottom, right});
    const dnnl::convolution_forward::primitive_desc pd(d, attr, engine);

    Op op;
    op.conv = true;
    op.primitive = dnnl::convolution_forward(pd);
    // The weights packed once, here, in the layout this primitive chose.
    dnnl::memory plain({wdims, dt::f32, o.groups == 1 ? tag::oihw : tag::goihw}, engine, weight.data_ptr());
    op.weights = dnnl::memory(pd.weights_desc(), engine);
    dnnl::reorder(plain, op.weights).execute(stream, plain, op.weights);
    op.bias = dnnl::memory(bias_md, engine);
    std::copy_n(bias.data_ptr<float>(), o.out, static_cast<float*>(op.bias.get_data_handle()));
    stream.wait();

    op.src = in_layout(src, pd.src_desc());
    if (residual_into >= 0) {
      if (pd.dst_desc() != descs[static_cast<size_t>(residual_into)])
        throw std::runtime_error("oneDNN chose a residual layout unlike the block input's");
      op.dst = residual_into;
    } else {
      op.dst = add_activation(pd.dst_desc());
    }
    ops.push_back(std::move(op));
    return ops.back().dst;
  }

  // Gives every activation but the input a buffer: one no other live
  // activation holds (live: from the op that writes it to the last op that
  // reads or adds into it), grown to the largest activation it carries.
  void place_activations() {
    std::vector<size_t> last_use(descs.size(), 0);
    for (size_t i = 0; i < ops.size(); ++i) {
      last_use[static_cast<size_t>(ops[i].src)] = i;
      last_use[static_cast<size_t>(ops[i].dst)] = std::max(last_use[static_cast<size_t>(ops[i].dst)], i);
    }
    last_use.back() = ops.size();  // the features: read after the last op
    std::vector<int> buffer_of(descs.size(), -1);
    std::vector<size_t> buffer_bytes, buffer_free_after;  // per buffer: size; the op after which it is free
    for (size_t i = 0; i < ops.size(); ++i) {
      const auto a = static_cast<size_t>(ops[i].dst);
      if (a == 0 || buffer_of[a] >= 0) continue;  // the input, or a residual add into a placed activation
      int chosen = -1;
      for (size_t b = 0; b < buffer_bytes.size() && chosen < 0; ++b)
        if (buffer_free_after[b] < i) chosen = static_cast<int>(b);  // its last reader ran before op i
      if (chosen < 0) {
        chosen = static_cast<int>(buffer_bytes.size());
        buffer_bytes.push_back(0);
        buffer_free_after.push_back(0);
      }
      const auto b = static_cast<size_t>(chosen);
      buffer_of[a] = chosen;
      buffer_bytes[b] = std::max(buffer_bytes[b], descs[a].get_size());
      buffer_free_after[b] = last_use[a];
    }
    for (size_t bytes : buffer_bytes)
      buffers.emplace_back(dnnl::memory::desc({static_cast<int64_t>(bytes)}, dt::u8, tag::x), engine);
    acts.push_back(dnnl::memory(descs[0], engine, static_cast<void*>(nullptr)));  // the caller's, set per run
    for (size_t a = 1; a < descs.size(); ++a)
      acts.emplace_back(descs[a], engine, buffers[static_cast<size_t>(buffer_of[a])].get_data_handle());
  }

  // The whole body for images [n, 3, h, w].
  void build(const EfficientNetImpl& net, int64_t n, int64_t h, int64_t w, Precision precision) {
    kind = precision == Precision::bf16 ? dt::bf16 : dt::f32;
    int x = add_activation(dnnl::memory::desc({n, 3, h, w}, dt::f32, tag::nchw));
    x = add_conv(*net.stem, x, -1);
    for (const auto& stage : net.stages())
      for (const auto& block : stage) {
        int y = block->has_expand() ? add_conv(*block->expand, x, -1) : x;
        y = add_conv(*block->dw, y, -1);
        if (block->residual())
          add_conv(*block->project, y, x);  // x += project(y): x is not read again
        else
          x = add_conv(*block->project, y, -1);
      }
    add_conv(*net.head_conv, x, -1);
    place_activations();
  }

  torch::Tensor run(const torch::Tensor& input) {
    acts[0].set_data_handle(input.data_ptr());
    for (auto& op : ops) {
      auto& src = acts[static_cast<size_t>(op.src)];
      auto& dst = acts[static_cast<size_t>(op.dst)];
      if (op.conv)
        op.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, op.weights}, {DNNL_ARG_BIAS, op.bias},
                                      {DNNL_ARG_DST, dst}});
      else
        op.primitive.execute(stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}});
    }
    auto& last = acts.back();
    const auto dims = last.get_desc().dims();
    auto out = torch::empty({dims[0], dims[1], dims[2], dims[3]});
    dnnl::memory plain({dims, dt::f32, tag::nchw}, engine, out.data_ptr());
    dnnl::reorder(last, plain).execute(stream, last, plain);
    stream.wait();
    return out;
  }
};

OneDnnBody::OneDnnBody(const ClassifierImpl& net, Precision precision) : net_(net), precision_(precision) {
  if (auto why = onednn_body_unsupported(net, precision); !why.empty()) throw std::invalid_argument(why);
}

OneDnnBody::~OneDnnBody() = default;

torch::Tensor OneDnnBody::features(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != 3 || !x.device().is_cpu() || x.scalar_type() != torch::kFloat)
    throw std::invalid_argument("the oneDNN body takes [N, 3, H, W] float images on the CPU");
  const auto key = std::make_tuple(x.size(0), x.size(2), x.size(3));
  auto it = programs_.find(key);
  if (it == programs_.end()) {
    // A few shapes in practice (the model's size, slices of a few images); a
    // bound all the same, since each program holds its own packed weights.
    constexpr size_t kMaxPrograms = 8;
    if (programs_.size() >= kMaxPrograms) programs_.erase(programs_.begin());
    torch::NoGradGuard no_grad;
    auto program = std::make_unique<Program>();
    program->build(dynamic_cast<const EfficientNetImpl&>(net_), x.size(0), x.size(2), x.size(3), precision_);
    it = programs_.emplace(key, std::move(program)).first;
  }
  const auto input = x.contiguous();
  return it->second->run(input);
}

#endif

}  // namespace fracture::models
