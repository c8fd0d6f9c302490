#pragma once
// EfficientNet-Lite's body (stem to head conv) for CPU inference, run as one
// oneDNN program instead of LibTorch's modules (issue 19).
//
// Why: LibTorch hands each convolution to oneDNN anew on every call, which
// reorders its weights into oneDNN's blocked layout each time, and runs
// ReLU6 and residual adds as separate passes. The program packs every weight
// once, when it is built, folds BatchNorm into weights and bias, runs ReLU6 as
// an eltwise post-op and the residual add as a sum post-op, and keeps the
// activations in oneDNN's blocked layout from the stem to the head conv. On
// the 2-core Xeon it ran the network at 1.4-1.6x LibTorch's path with logits
// equal within 1e-6 (docs/benchmarks.md). The head (pooling, classifier, cell
// pooling) stays the network's own.
//
// Built only where libdnnl-dev (oneDNN 2.x, the library LibTorch 1.13 itself
// calls) was found at configure time; elsewhere `unsupported` says so and the
// callers keep LibTorch's path.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "fracture/models/classifier.h"

namespace fracture::models {

// The number format of the program's weights and activations. bf16 keeps
// biases and accumulation in f32; it needs AVX512-BF16 or AMX to be fast.
// int8: weights quantised per output channel, activations per tensor with
// ranges measured on calibration images (int8_activation_ranges);
// accumulation in int32, the head conv's output in f32.
enum class Precision { fp32, bf16, int8 };
Precision parse_precision(const std::string& name);  // "fp32", "bf16" or "int8"; throws std::invalid_argument
std::string precision_name(Precision p);

// The magnitude each activation the int8 program quantises reaches on
// `images` ([N, 3, H, W], preprocessed as for prediction) at `percentile`
// (100: the largest), in the program's order (input, stem, then each
// block's expand, depthwise and project-plus-residual outputs), each the max
// of itself and `so_far`'s: call it batch by batch. Runs LibTorch's modules;
// needs no oneDNN.
std::vector<float> int8_activation_ranges(ClassifierImpl& net, const torch::Tensor& images,
                                          std::vector<float> so_far = {}, double percentile = 100);

// Why `net` cannot run as a oneDNN program at `precision` on this machine and
// build, or "" when it can: this build has no oneDNN; not an EfficientNet;
// squeeze-excitation or SiLU (only Lite's ReLU6 is fused); bf16 without
// AVX512-BF16 or AMX.
std::string onednn_body_unsupported(const ClassifierImpl& net, Precision precision);

// The family of int8 kernels oneDNN runs on this CPU (respecting
// ONEDNN_MAX_CPU_ISA): "amx", "avx512_vnni" or "avx2_vnni"; "" where none
// (no VNNI, or no oneDNN in this build). An int8 accuracy check holds for
// the family it ran on: `--precision auto` trusts it only there.
std::string int8_cpu_class();

// One network's programs, one per input shape (built on first use, at most
// a few kept). Not thread-safe: callers serialise (the Predictor does).
class OneDnnBody {
 public:
  // Reads the network's weights now: build it after the network is final.
  // Throws std::invalid_argument with onednn_body_unsupported's reason, or
  // for int8 without ranges (int8_activation_ranges) that fit the network.
  OneDnnBody(const ClassifierImpl& net, Precision precision, std::vector<float> int8_ranges = {});
  ~OneDnnBody();
  OneDnnBody(const OneDnnBody&) = delete;
  OneDnnBody& operator=(const OneDnnBody&) = delete;

  // The network's features for x ([N, 3, H, W] float on the CPU): what
  // net.forward_features(x) gives in eval mode, as [N, C, h, w] float.
  torch::Tensor features(const torch::Tensor& x);
  Precision precision() const { return precision_; }

 private:
  struct Program;
  const ClassifierImpl& net_;
  Precision precision_;
  std::vector<float> int8_ranges_;
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Program>> programs_;  // by N, H, W
};

}  // namespace fracture::models
