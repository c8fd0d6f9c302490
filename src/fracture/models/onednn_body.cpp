#include "fracture/models/onednn_body.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fracture/models/efficientnet.h"

#ifdef FRACTURE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace fracture::models {

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  if (name == "int8") return Precision::int8;
  throw std::invalid_argument("precision '" + name + "': expected fp32, bf16 or int8");
}

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
    default: return "fp32";
  }
}

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

// x's magnitude at `percentile` (100: the largest), from at most 4 million
// evenly strided values.
float magnitude_at(const torch::Tensor& x, double percentile) {
  if (percentile >= 100) return x.abs().max().item<float>();
  auto flat = x.abs().flatten();
  const int64_t step = std::max<int64_t>(1, flat.numel() / 4000000);
  flat = flat.slice(0, 0, flat.numel(), step).contiguous();
  const auto k = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(percentile / 100.0 * flat.numel())), 1, flat.numel());
  return std::get<0>(flat.kthvalue(k)).item<float>();
}

// Records int8_activation_ranges' n-th entry for activation x.
void observe(std::vector<float>& ranges, size_t& n, const torch::Tensor& x, double percentile) {
  const float m = magnitude_at(x, percentile);
  if (ranges.size() <= n) ranges.resize(n + 1, 0.f);
  ranges[n] = std::max(ranges[n], m);
  ++n;
}

// How many activations the int8 program quantises (int8_activation_ranges' order).
size_t quantised_activations(const EfficientNetImpl& net) {
  size_t n = 2;  // the input, the stem's output
  for (const auto& stage : net.stages())
    for (const auto& block : stage) n += block->has_expand() ? 3 : 2;
  return n;
}

}  // namespace

std::vector<float> int8_activation_ranges(ClassifierImpl& net, const torch::Tensor& images,
                                          std::vector<float> so_far, double percentile) {
  if (auto why = network_unsupported(net); !why.empty()) throw std::invalid_argument(why);
  auto& lite = dynamic_cast<EfficientNetImpl&>(net);
  torch::NoGradGuard no_grad;
  if (!so_far.empty() && so_far.size() != quantised_activations(lite))
    throw std::invalid_argument("int8 ranges so far are of another network");
  size_t n = 0;
  observe(so_far, n, images, percentile);
  auto x = lite.stem->forward(images);
  observe(so_far, n, x, percentile);
  for (const auto& stage : lite.stages())
    for (auto block : stage) {  // a holder copy: its layers run non-const
      auto y = x;
      if (block->has_expand()) observe(so_far, n, y = block->expand->forward(x), percentile);
      observe(so_far, n, y = block->dw->forward(y), percentile);
      y = block->project->forward(y);
      x = block->residual() ? y + x : y;
      observe(so_far, n, x, percentile);
    }
  return so_far;
}

#ifndef FRACTURE_WITH_ONEDNN

std::string int8_cpu_class() { return ""; }

std::string onednn_body_unsupported(const ClassifierImpl& net, Precision) {
  if (auto why = network_unsupported(net); !why.empty()) return why;
  return "this build has no oneDNN (libdnnl-dev was not found at configure time)";
}
struct OneDnnBody::Program {};
OneDnnBody::OneDnnBody(const ClassifierImpl& net, Precision precision, std::vector<float>)
    : net_(net), precision_(precision) {
  throw std::invalid_argument(onednn_body_unsupported(net, precision));
}
OneDnnBody::~OneDnnBody() = default;
torch::Tensor OneDnnBody::features(const torch::Tensor&) { throw std::logic_error("no oneDNN in this build"); }

#else

namespace {

using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// Whether oneDNN (respecting ONEDNN_MAX_CPU_ISA) may use `wanted`'s instructions.
bool cpu_has(dnnl::cpu_isa wanted) {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bits = static_cast<unsigned>(wanted);
  return (isa & bits) == bits;
}

}  // namespace

std::string int8_cpu_class() {
  if (cpu_has(dnnl::cpu_isa::avx512_core_amx)) return "amx";
  if (cpu_has(dnnl::cpu_isa::avx512_core_vnni)) return "avx512_vnni";
  if (cpu_has(dnnl::cpu_isa::avx2_vnni)) return "avx2_vnni";
  return "";
}

std::string onednn_body_unsupported(const ClassifierImpl& net, Precision precision) {
  if (auto why = network_unsupported(net); !why.empty()) return why;
  if (precision == Precision::bf16 && !cpu_has(dnnl::cpu_isa::avx512_core_bf16))
    return "bf16 needs a CPU with AVX512-BF16 or AMX, and this one (as oneDNN sees it) has neither";
  // Without VNNI, oneDNN multiplies u8 by s8 in saturating 16-bit sums.
  if (precision == Precision::int8 && int8_cpu_class().empty())
    return "int8 needs a CPU with VNNI (AVX512-VNNI, AVX-VNNI or AMX), and this one (as oneDNN sees it) has none";
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
  Precision precision = Precision::fp32;
  struct Value {  // an activation the program computes
    dnnl::memory::desc desc;
    float scale = 1;            // int8: stored value = scale x real value; 1 otherwise
    float range = 0;            // int8 calibration's range of the real values (0: none)
    bool non_negative = false;  // after a ReLU
  };
  std::vector<Value> activations;  // 0 is the caller's input
  std::vector<dnnl::memory> acts;         // made by place_activations
  std::vector<dnnl::memory> buffers;      // what the activations share
  std::vector<Op> ops;

  int add_activation(Value a) {
    activations.push_back(std::move(a));
    return static_cast<int>(activations.size()) - 1;
  }
  Value& activation(int i) { return activations[static_cast<size_t>(i)]; }
  const Value& activation(int i) const { return activations[static_cast<size_t>(i)]; }

  // `src` in the layout and number format `want` (quantised with `scale` when
  // that is int8): itself, or a reorder into a new activation.
  int in_layout(int src, const dnnl::memory::desc& want, float scale) {
    const auto have = activation(src);  // a copy: adding an activation may move the others
    if (have.desc == want) return src;
    dnnl::primitive_attr attr;
    const float ratio = scale / have.scale;
    if (ratio != 1.f) attr.set_output_scales(0, {ratio});
    Op op;
    op.primitive = dnnl::reorder(dnnl::reorder::primitive_desc(engine, have.desc, engine, want, attr));
    op.src = src;
    op.dst = add_activation({want, scale, have.range, have.non_negative});
    ops.push_back(std::move(op));
    return ops.back().dst;
  }

  // conv + folded BatchNorm + activation reading `src`; returns its output.
  // With residual_into >= 0 the result is added into that activation (the
  // block's input, which nothing reads afterwards) instead. int8: the output
  // is quantised for magnitudes up to `out_range` (f32 where it is 0).
  int add_conv(const ConvBnActImpl& layer, int src, int residual_into, float out_range = 0.f) {
    const auto& o = layer.options();
    const auto dims = activation(src).desc.dims();  // N, C, H, W
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
    const bool activated = o.act == Activation::ReLU6 || o.act == Activation::ReLU;
    if (activated && residual_into >= 0) throw std::logic_error("an activation after a residual add is not fused");
    const Formats f = formats(src, activated, out_range);
    const dnnl::memory::desc src_any({n, o.in, h, w}, f.src, tag::any), weights_any(wdims, f.weights, tag::any),
        bias_md({o.out}, dt::f32, tag::x), dst_any({n, o.out, oh, ow}, f.dst, tag::any);
    const Quantised q = quantise(weight, bias, src, residual_into, f, activated, out_range);
    dnnl::primitive_attr attr;
    if (!q.output_scales.empty()) attr.set_output_scales(1 << 1, q.output_scales);
    dnnl::post_ops post;
    if (residual_into >= 0) post.append_sum(q.sum_scale);
    if (o.act == Activation::ReLU6) post.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, 0.f, 6.f);
    if (o.act == Activation::ReLU) post.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
    if (activated && q.dst_scale != 1.f) post.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, q.dst_scale, 0.f);
    attr.set_post_ops(post);
    const dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src_any, weights_any, bias_md, dst_any, {s, s}, {top, left},
                                            {bottom, right});
    const dnnl::convolution_forward::primitive_desc pd(d, attr, engine);

    Op op;
    op.conv = true;
    op.primitive = dnnl::convolution_forward(pd);
    // The weights packed once, here, in the layout this primitive chose.
    const dt plain_type = q.weights.scalar_type() == torch::kChar ? dt::s8 : dt::f32;
    dnnl::memory plain({wdims, plain_type, o.groups == 1 ? tag::oihw : tag::goihw}, engine, q.weights.data_ptr());
    op.weights = dnnl::memory(pd.weights_desc(), engine);
    dnnl::reorder(plain, op.weights).execute(stream, plain, op.weights);
    op.bias = dnnl::memory(bias_md, engine);
    std::copy_n(q.bias.data_ptr<float>(), o.out, static_cast<float*>(op.bias.get_data_handle()));
    stream.wait();

    op.src = in_layout(src, pd.src_desc(), q.src_scale);
    if (residual_into >= 0) {
      auto& sum = activation(residual_into);  // the sum replaces the block input
      if (pd.dst_desc() != sum.desc) throw std::runtime_error("oneDNN chose a residual layout unlike the block input's");
      op.dst = residual_into;
      sum.scale = q.dst_scale;
      sum.range = out_range;
    } else {
      op.dst = add_activation({pd.dst_desc(), q.dst_scale, out_range, activated});
    }
    ops.push_back(std::move(op));
    return ops.back().dst;
  }

  struct Formats {
    dt src, weights, dst;
  };
  // The int8 grid's steps from 0 to a range: 255 unsigned, 127 signed.
  static float int8_levels(dt type) { return type == dt::u8 ? 255.f : 127.f; }
  // fp32 and bf16 throughout; int8: signed unless the values cannot be
  // negative (ReLU's), the head conv's output in f32.
  Formats formats(int src, bool non_negative_out, float out_range) const {
    if (precision == Precision::fp32) return {dt::f32, dt::f32, dt::f32};
    if (precision == Precision::bf16) return {dt::bf16, dt::bf16, dt::bf16};
    const auto& a = activation(src);
    const auto src_type = a.desc.data_type() != dt::f32 ? a.desc.data_type() : a.non_negative ? dt::u8 : dt::s8;
    return {src_type, dt::s8, out_range <= 0 ? dt::f32 : non_negative_out ? dt::u8 : dt::s8};
  }

  struct Quantised {
    torch::Tensor weights, bias;       // as the primitive takes them
    std::vector<float> output_scales;  // per output channel; empty: none
    float src_scale = 1, dst_scale = 1, sum_scale = 1;
  };
  // int8 (oneDNN 2.x's convention: dst = post_ops(output_scale x (acc + bias))):
  // weights scaled per output channel to +-127, the bias to the accumulator's
  // scale; ReLU outputs are rescaled to real values, clipped, then scaled to
  // the output's; a residual sum adds the block input rescaled to the output's.
  Quantised quantise(const torch::Tensor& weight, const torch::Tensor& bias, int src, int residual_into,
                     const Formats& f, bool activated, float out_range) const {
    Quantised q;
    if (precision != Precision::int8) {
      q.weights = weight;
      q.bias = bias;
      return q;
    }
    const auto& a = activation(src);  // quantised here if it is not yet
    q.src_scale = a.desc.data_type() != dt::f32 ? a.scale : int8_levels(f.src) / std::max(a.range, 1e-6f);
    q.dst_scale = f.dst == dt::f32 ? 1.f : int8_levels(f.dst) / std::max(out_range, 1e-6f);
    const auto w = weight.flatten(1);
    const auto w_scale = 127.0 / w.abs().amax(1).clamp_min(1e-12);
    q.weights = (weight * w_scale.view({-1, 1, 1, 1})).round().clamp(-127, 127).to(torch::kChar).contiguous();
    q.bias = (bias * w_scale * q.src_scale).contiguous();
    // ReLU's clip needs real values; without it, straight to the output's scale.
    const auto output_scales = (1.0 / (w_scale * q.src_scale) * (activated ? 1.f : q.dst_scale)).to(torch::kFloat).contiguous();
    q.output_scales.assign(output_scales.data_ptr<float>(), output_scales.data_ptr<float>() + output_scales.numel());
    if (residual_into >= 0) q.sum_scale = q.dst_scale / activation(residual_into).scale;
    return q;
  }

  // Gives every activation but the input a buffer: one no other live
  // activation holds (live: from the op that writes it to the last op that
  // reads or adds into it), grown to the largest activation it carries.
  void place_activations() {
    std::vector<size_t> last_use(activations.size(), 0);
    for (size_t i = 0; i < ops.size(); ++i) {
      last_use[static_cast<size_t>(ops[i].src)] = i;
      last_use[static_cast<size_t>(ops[i].dst)] = std::max(last_use[static_cast<size_t>(ops[i].dst)], i);
    }
    last_use.back() = ops.size();  // the features: read after the last op
    std::vector<int> buffer_of(activations.size(), -1);
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
      buffer_bytes[b] = std::max(buffer_bytes[b], activations[a].desc.get_size());
      buffer_free_after[b] = last_use[a];
    }
    for (size_t bytes : buffer_bytes)
      buffers.emplace_back(dnnl::memory::desc({static_cast<int64_t>(bytes)}, dt::u8, tag::x), engine);
    acts.push_back(dnnl::memory(activations[0].desc, engine, static_cast<void*>(nullptr)));  // the caller's, set per run
    for (size_t a = 1; a < activations.size(); ++a)
      acts.emplace_back(activations[a].desc, engine, buffers[static_cast<size_t>(buffer_of[a])].get_data_handle());
  }

  // The whole body for images [n, 3, h, w].
  // `calibration`: int8_activation_ranges' (int8 only).
  void build(const EfficientNetImpl& net, int64_t n, int64_t h, int64_t w, Precision p,
             const std::vector<float>& calibration) {
    precision = p;
    size_t next = 0;
    auto range = [&] { return p == Precision::int8 ? calibration.at(next++) : 0.f; };
    int x = add_activation({dnnl::memory::desc({n, 3, h, w}, dt::f32, tag::nchw), 1.f, range()});
    x = add_conv(*net.stem, x, -1, range());
    for (const auto& stage : net.stages())
      for (const auto& block : stage) {
        int y = block->has_expand() ? add_conv(*block->expand, x, -1, range()) : x;
        y = add_conv(*block->dw, y, -1, range());
        if (block->residual())
          add_conv(*block->project, y, x, range());  // x += project(y): x is not read again
        else
          x = add_conv(*block->project, y, -1, range());
      }
    add_conv(*net.head_conv, x, -1);
    if (next != calibration.size() && precision == Precision::int8)
      throw std::logic_error("the int8 program read " + std::to_string(next) + " of its " +
                             std::to_string(calibration.size()) + " ranges");
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

OneDnnBody::OneDnnBody(const ClassifierImpl& net, Precision precision, std::vector<float> int8_ranges)
    : net_(net), precision_(precision), int8_ranges_(std::move(int8_ranges)) {
  if (auto why = onednn_body_unsupported(net, precision); !why.empty()) throw std::invalid_argument(why);
  if (precision == Precision::int8) {
    if (int8_ranges_.empty()) throw std::invalid_argument("int8 needs activation ranges measured on calibration images");
    const auto wanted = quantised_activations(dynamic_cast<const EfficientNetImpl&>(net));
    if (int8_ranges_.size() != wanted)
      throw std::invalid_argument("int8 calibration has " + std::to_string(int8_ranges_.size()) +
                                  " activation ranges, the network quantises " + std::to_string(wanted));
    for (float r : int8_ranges_)
      if (!std::isfinite(r) || r <= 0) throw std::invalid_argument("int8 activation ranges must be finite and positive");
  }
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
    program->build(dynamic_cast<const EfficientNetImpl&>(net_), x.size(0), x.size(2), x.size(3), precision_, int8_ranges_);
    it = programs_.emplace(key, std::move(program)).first;
  }
  const auto input = x.contiguous();
  return it->second->run(input);
}

#endif

}  // namespace fracture::models
