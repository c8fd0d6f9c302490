// The network alone, as `fracture predict` and the server run it
// (Predictor::score: slices of a few images; an EfficientNet-Lite's body as
// one oneDNN program, models/onednn_body.h), on random inputs of the model's
// size. For bench/onnx_peers.py, which runs it beside ONNX Runtime and
// OpenVINO on the exported file.
//
//   network_speed MODEL BATCH SECONDS [THREADS] [fp32|bf16|int8|auto|libtorch]
// libtorch: LibTorch's modules instead of the oneDNN program (BatchNorm
// folded, channels-last), as predict ran before it; auto: what predict picks. int8 needs a model from
// `fracture calibrate`.
// prints one JSON line: {"images_per_s": ..., "passes": ..., "batch": ..., "size": ..., "threads": ...,
// "gflop_per_image": ..., "gflops": ..., "engine": ...} (GFLOP of the convolutions, 2 per multiply-add)
#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "fracture/models/efficientnet.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/util/paths.h"
#include "fracture/util/runtime.h"

// GFLOP (2 per multiply-add) of an EfficientNet's convolutions for one
// size x size image (every network of an ensemble); 0 for other networks.
// The head's pooling and classifier add under 0.1%.
double conv_gflop(const std::string& model, int size) {
  const auto m = fracture::train::load_networks(fracture::util::resolve_model(model));
  const auto* net = dynamic_cast<const fracture::models::EfficientNetImpl*>(m.nets[0].get());
  if (!net) return 0;
  double macs = 0;
  int64_t side = size;
  auto conv = [&](const fracture::models::ConvBnActImpl& layer) {
    const auto& o = layer.options();
    side = (side + o.stride - 1) / o.stride;  // SAME padding: ceil(input / stride)
    macs += static_cast<double>(side * side) * o.out * (o.in / o.groups) * o.kernel * o.kernel;
  };
  conv(*net->stem);
  for (const auto& stage : net->stages())
    for (const auto& block : stage) {
      if (block->has_expand()) conv(*block->expand);
      conv(*block->dw);
      conv(*block->project);
    }
  conv(*net->head_conv);
  return static_cast<double>(m.nets.size()) * 2 * macs / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: network_speed MODEL BATCH SECONDS [THREADS] [fp32|bf16|int8|auto|libtorch]\n";
    return 2;
  }
  const int batch = std::stoi(argv[2]);
  const double seconds = std::stod(argv[3]);
  // As `fracture` does at start: its threads and its malloc settings (large
  // buffers kept in the heap; without them every activation is a fresh
  // mapping and the network ran at 0.6x).
  fracture::util::configure_runtime(argc > 4 ? std::stoi(argv[4]) : 0);
  fracture::PredictorOptions options{argv[1]};
  options.device = "cpu";
  const std::string engine = argc > 5 ? argv[5] : "fp32";
  options.fused = engine != "libtorch";
  options.precision = engine == "libtorch" ? "fp32" : engine;
  fracture::Predictor predictor(options);
  const int size = predictor.info().preprocess.size;
  torch::manual_seed(0);
  std::vector<fracture::PreparedImage> images(batch);
  for (auto& im : images) im.input = torch::randn({3, size, size});

  using clock = std::chrono::steady_clock;
  for (int i = 0; i < 2; ++i) predictor.score(images);  // warm-up: oneDNN builds its primitives
  int passes = 0;
  const auto start = clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    predictor.score(images);
    ++passes;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  }
  const double gflop = conv_gflop(argv[1], size);
  std::cout << nlohmann::json{{"images_per_s", passes * batch / elapsed}, {"passes", passes}, {"batch", batch},
                              {"size", size}, {"threads", torch::get_num_threads()},
                              {"gflop_per_image", gflop}, {"gflops", gflop * passes * batch / elapsed},
                              {"engine", predictor.engine()}}
                   .dump()
            << "\n";
}
