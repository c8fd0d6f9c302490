// Issue 19's lever "weights packed once, convolution + BatchNorm + ReLU6
// (+ residual add) fused, fewer layout reorders", measured before building it
// into the library: an EfficientNet-Lite body run through oneDNN directly
// (Debian's libdnnl-dev 2.6, the library LibTorch 1.13 itself calls), against
// the same network as `fracture predict` runs it (Predictor's preparation:
// BatchNorm folded, channels-last, ATen -> oneDNN per call), interleaved.
//
// The oneDNN program: every convolution's weights reordered once into the
// layout its primitive picked, BatchNorm folded into weights and bias, ReLU6
// as an eltwise post-op, the residual add as a sum post-op into the block's
// input (which nothing needs afterwards), activations kept in oneDNN's blocked
// layout from the stem to the head conv. The head (pooling, classifier) stays
// in LibTorch. Checked: the logits match LibTorch's.
//
//   onednn_lite MODEL BATCH SECONDS ROUNDS [THREADS] [f32|bf16]
// bf16: weights and activations in bfloat16 (biases and accumulation in f32),
// where the CPU has AVX512-BF16 or AMX; the logits' difference says what it costs.
// prints one line per round and a summary; stdout only. With ROUNDS 0 it
// times the oneDNN program alone, once, and prints one JSON line as
// bench/network_speed does (for bench/onnx_peers.py).
#include <oneapi/dnnl/dnnl.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fracture/models/efficientnet.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/util/runtime.h"

namespace {

using fracture::models::Activation;
using fracture::models::ConvBnAct;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// One convolution of the program: src activation -> dst activation.
struct Step {
  dnnl::convolution_forward conv;
  dnnl::memory weights, bias;
  int src = 0, dst = 0;  // indices into Program::acts
  bool sum_into_dst = false;  // residual: dst already holds the block input
};

struct Program {
  dt kind = dt::f32;  // of weights and activations
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::vector<dnnl::memory> acts;  // activations, in the layouts the primitives chose
  std::vector<Step> steps;
  int reorders_between_layers = 0;
  std::vector<std::pair<dnnl::reorder, std::pair<int, int>>> fixups;  // (reorder, (from act, to act)) before a step
  std::vector<int> fixup_before;  // step index -> fixup index or -1
  dnnl::memory::desc input_desc;
};

// Appends conv(+BN folded)(+ReLU6) reading activation `src`; returns the new activation's index.
// With residual_into >= 0 the result is added into that activation instead (sum post-op).
int add_conv(Program& p, const ConvBnAct& cb, int src, int residual_into) {
  torch::NoGradGuard g;
  const auto& o = cb->options();
  const auto& in = p.acts[static_cast<size_t>(src)].get_desc();
  const auto dims = in.dims();  // N, C, H, W
  const int64_t n = dims[0], h = dims[2], w = dims[3], k = o.kernel, s = o.stride;
  int64_t pt = (k - 1) / 2, pb = pt, pl = pt, pr = pt;
  if (o.tf_same_padding && s > 1) {
    const int64_t th = fracture::models::tf_same_pad_total(h, k, s), tw = fracture::models::tf_same_pad_total(w, k, s);
    pt = th / 2, pb = th - pt, pl = tw / 2, pr = tw - pl;
  }
  const int64_t oh = (h + pt + pb - k) / s + 1, ow = (w + pl + pr - k) / s + 1;
  // BatchNorm folded here (the module itself is left as it is).
  const auto scale = cb->bn->weight / torch::sqrt(cb->bn->running_var + cb->bn->options.eps());
  const auto weight = (cb->conv->weight * scale.view({-1, 1, 1, 1})).contiguous();
  const auto bias = (cb->bn->bias - cb->bn->running_mean * scale).contiguous();

  const dnnl::memory::dims wdims = o.groups == 1 ? dnnl::memory::dims{o.out, o.in, k, k}
                                                  : dnnl::memory::dims{o.groups, o.out / o.groups, o.in / o.groups, k, k};
  const dnnl::memory::desc src_any({n, o.in, h, w}, p.kind, tag::any), wei_any(wdims, p.kind, tag::any),
      bias_md({o.out}, dt::f32, tag::x), dst_any({n, o.out, oh, ow}, p.kind, tag::any);
  dnnl::post_ops ops;
  if (residual_into >= 0) ops.append_sum(1.f);
  if (o.act == Activation::ReLU6) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, 0.f, 6.f);
  else if (o.act == Activation::ReLU) ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
  else if (o.act != Activation::None) throw std::runtime_error("only ReLU6/ReLU/no activation (EfficientNet-Lite)");
  dnnl::primitive_attr attr;
  attr.set_post_ops(ops);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_any,
                                    wei_any, bias_md, dst_any, {s, s}, {pt, pl}, {pb, pr});
  dnnl::convolution_forward::primitive_desc pd(d, attr, p.engine);

  Step step;
  step.conv = dnnl::convolution_forward(pd);
  // Weights packed once, here.
  dnnl::memory user_w({wdims, dt::f32, o.groups == 1 ? tag::oihw : tag::goihw}, p.engine, weight.data_ptr());
  step.weights = dnnl::memory(pd.weights_desc(), p.engine);
  dnnl::reorder(user_w, step.weights).execute(p.stream, user_w, step.weights);
  step.bias = dnnl::memory(bias_md, p.engine);
  std::copy_n(bias.data_ptr<float>(), o.out, static_cast<float*>(step.bias.get_data_handle()));
  p.stream.wait();

  // The input in the layout this primitive wants (a reorder only if the previous one chose another).
  int from = src;
  if (pd.src_desc() != in) {
    p.acts.emplace_back(pd.src_desc(), p.engine);
    p.fixups.push_back({dnnl::reorder(p.acts[static_cast<size_t>(src)], p.acts.back()),
                        {src, static_cast<int>(p.acts.size()) - 1}});
    p.fixup_before.push_back(static_cast<int>(p.fixups.size()) - 1);
    from = static_cast<int>(p.acts.size()) - 1;
    ++p.reorders_between_layers;
  } else {
    p.fixup_before.push_back(-1);
  }
  step.src = from;
  if (residual_into >= 0) {
    if (pd.dst_desc() != p.acts[static_cast<size_t>(residual_into)].get_desc())
      throw std::runtime_error("residual layout differs from the block input's");
    step.dst = residual_into;
    step.sum_into_dst = true;
  } else {
    p.acts.emplace_back(pd.dst_desc(), p.engine);
    step.dst = static_cast<int>(p.acts.size()) - 1;
  }
  p.steps.push_back(std::move(step));
  return p.steps.back().dst;
}

Program build(fracture::models::EfficientNetImpl& net, int64_t batch, int64_t size, dt kind) {
  Program p;
  p.kind = kind;
  p.input_desc = dnnl::memory::desc({batch, 3, size, size}, dt::f32, tag::nchw);
  p.acts.emplace_back(p.input_desc, p.engine);  // 0: the input, filled per pass
  int x = add_conv(p, net.stem, 0, -1);
  for (const auto& stage : net.stages())
    for (const auto& block : stage) {
      int y = block->has_expand() ? add_conv(p, block->expand, x, -1) : x;
      y = add_conv(p, block->dw, y, -1);
      if (block->residual()) {
        // The block input is overwritten with input + project(y): nothing reads it afterwards.
        add_conv(p, block->project, y, x);
      } else {
        x = add_conv(p, block->project, y, -1);
      }
    }
  add_conv(p, net.head_conv, x, -1);
  return p;
}

// Features [N, C, h, w] of `input` (NCHW float, the program's batch and size).
torch::Tensor run(Program& p, const torch::Tensor& input) {
  auto in = input.contiguous();
  p.acts[0].set_data_handle(in.data_ptr());
  // The residual blocks add into their input in place: the input activation
  // of the first block must be fresh each pass, and it is (the stem writes it).
  for (size_t i = 0; i < p.steps.size(); ++i) {
    if (p.fixup_before[i] >= 0) {
      auto& f = p.fixups[static_cast<size_t>(p.fixup_before[i])];
      f.first.execute(p.stream, p.acts[static_cast<size_t>(f.second.first)], p.acts[static_cast<size_t>(f.second.second)]);
    }
    auto& s = p.steps[i];
    s.conv.execute(p.stream, {{DNNL_ARG_SRC, p.acts[static_cast<size_t>(s.src)]},
                              {DNNL_ARG_WEIGHTS, s.weights},
                              {DNNL_ARG_BIAS, s.bias},
                              {DNNL_ARG_DST, p.acts[static_cast<size_t>(s.dst)]}});
  }
  const auto& last = p.acts[static_cast<size_t>(p.steps.back().dst)];
  const auto dims = last.get_desc().dims();
  auto out = torch::empty({dims[0], dims[1], dims[2], dims[3]});
  dnnl::memory user({dims, dt::f32, tag::nchw}, p.engine, out.data_ptr());
  dnnl::reorder(last, user).execute(p.stream, const_cast<dnnl::memory&>(last), user);
  p.stream.wait();
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: onednn_lite MODEL BATCH SECONDS ROUNDS [THREADS]\n";
    return 2;
  }
  const int64_t batch = std::stoi(argv[2]);
  const double seconds = std::stod(argv[3]);
  const int rounds = std::stoi(argv[4]);
  fracture::util::configure_runtime(argc > 5 ? std::stoi(argv[5]) : 0);
  torch::NoGradGuard no_grad;

  // Ours as predict runs it, and an untouched copy for the oneDNN program.
  auto reference = fracture::train::load_model(argv[1]);
  auto plain = fracture::train::load_model(argv[1]);
  plain.net->eval();
  auto* lite = dynamic_cast<fracture::models::EfficientNetImpl*>(plain.net.get());
  if (!lite) {
    std::cerr << "error: " << argv[1] << " is not an EfficientNet\n";
    return 1;
  }
  fracture::train::prepare_for_inference(*reference.net, torch::kCPU);
  const int64_t size = reference.info.preprocess.size;
  const std::string precision = argc > 6 ? argv[6] : "f32";
  if (precision != "f32" && precision != "bf16") {
    std::cerr << "error: precision '" << precision << "': f32 or bf16\n";
    return 2;
  }
  Program program = build(*lite, batch, size, precision == "bf16" ? dt::bf16 : dt::f32);

  torch::manual_seed(0);
  const auto x = torch::randn({batch, 3, size, size});
  const auto ours = reference.net->forward(x.contiguous(at::MemoryFormat::ChannelsLast));
  const auto direct = plain.net->forward_head(run(program, x));
  const double diff = (ours - direct).abs().max().item<double>();
  const double scale = ours.abs().max().item<double>();

  auto time = [&](auto&& pass) {
    for (int i = 0; i < 2; ++i) pass();  // warm-up
    int passes = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    while (elapsed < seconds) {
      pass();
      ++passes;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    return static_cast<double>(passes * batch) / elapsed;
  };
  if (rounds == 0) {
    if (precision == "f32" && diff > 1e-3 * std::max(1.0, scale)) {
      std::cerr << "error: the oneDNN program's logits differ from LibTorch's by " << diff << "\n";
      return 1;
    }
    const double rate = time([&] { plain.net->forward_head(run(program, x)); });
    std::cout << nlohmann::json{{"images_per_s", rate}, {"batch", batch}, {"size", size},
                                {"threads", torch::get_num_threads()}, {"max_abs_logit_diff", diff}, {"precision", precision}}
                     .dump()
              << "\n";
    return 0;
  }
  std::vector<double> a, b;
  for (int r = 0; r < rounds; ++r) {
    a.push_back(time([&] { reference.net->forward(x.contiguous(at::MemoryFormat::ChannelsLast)); }));
    b.push_back(time([&] { plain.net->forward_head(run(program, x)); }));
    std::cout << fmt::format("round {}: LibTorch path {:.1f} img/s, oneDNN program {:.1f} img/s\n", r + 1, a.back(),
                             b.back());
  }
  std::cout << fmt::format(
      "{} {} px, batch {}, {} threads, {} convolutions ({} reorders between layers); logits max |diff| {:.2e} (max "
      "|logit| {:.2f})\nmedians: LibTorch path {:.1f} img/s, oneDNN program {:.1f} img/s, ratio {:.2f}\n",
      precision, size, batch, torch::get_num_threads(), program.steps.size(), program.reorders_between_layers, diff, scale,
      median(a), median(b), median(b) / std::max(1e-9, median(a)));
}
