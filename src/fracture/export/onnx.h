#pragma once
// A trained model as an ONNX file, for users who deploy with ONNX Runtime,
// OpenVINO or TensorRT. The graph is written node by node from the network's
// own structure (LibTorch has no ONNX exporter in C++): BatchNorm folded into
// the convolutions, the model's head (average pooling, or cell pooling) and
// a softmax, so that the file's `probabilities` are `fracture predict`'s.
//
// Everything needed to feed it travels in the file's metadata (see
// docs/export.md): input size, resize rule, mean and std, grey or colour,
// class names, the operating threshold chosen on validation.
#include <cstdint>
#include <string>

#include "fracture/train/checkpoint.h"

namespace fracture::exporter {

struct OnnxSummary {
  int64_t input_size = 0;  // the input is [batch, 3, input_size, input_size]
  int64_t num_classes = 0;
  int64_t nodes = 0;
  int64_t parameters = 0;
  int opset = 0;
  uint64_t bytes = 0;
};

// The ONNX opset written: 13 is read by every ONNX Runtime since 1.6, by
// OpenVINO and by TensorRT 8.
inline constexpr int kOnnxOpset = 13;

// The model as serialised ONNX bytes, checked by ONNX's own checker. The
// batch dimension is left free. Throws std::invalid_argument for an
// architecture the exporter does not know (VGG), naming it.
std::string onnx_bytes(const train::LoadedModel& model, OnnxSummary* summary = nullptr);
// An ensemble's graph holds every member's network and combines their
// outputs as the Predictor does: logits are the mean of the members'
// log-probabilities, so `probabilities` are `fracture predict`'s.
std::string onnx_bytes(const train::LoadedNetworks& model, OnnxSummary* summary = nullptr);

// Loads `model_path` and writes its ONNX form to `out_path` atomically.
OnnxSummary export_onnx(const std::string& model_path, const std::string& out_path);

}  // namespace fracture::exporter
