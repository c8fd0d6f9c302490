// Google Benchmark micro-benchmarks of the three costs behind every image:
// decoding, preprocessing, and the network's forward pass, each with the
// levers docs/benchmarks.md discusses (reduced-scale JPEG decoding,
// channels-last, inference mode, BatchNorm folding).
//
//   build/bench/micro_benchmarks                      # generated 2304x2880 radiograph
//   FRACTURE_BENCH_IMAGE=scan.jpg build/bench/micro_benchmarks --benchmark_filter=Decode
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fracture/data/image_io.h"
#include "fracture/data/transforms.h"
#include "fracture/models/layers.h"
#include "fracture/models/memory_format.h"
#include "fracture/models/registry.h"
#include "fracture/util/runtime.h"

namespace {

using namespace fracture;

// A FracAtlas-sized grey JPEG (2304x2880, the dataset's commonest size), or the file in FRACTURE_BENCH_IMAGE.
const std::string& image_bytes() {
  static const std::string bytes = [] {
    if (const char* f = std::getenv("FRACTURE_BENCH_IMAGE"); f && *f) {
      std::vector<uchar> raw;
      cv::Mat m = cv::imread(f, cv::IMREAD_UNCHANGED);
      if (m.empty()) throw std::runtime_error(std::string(f) + ": cannot read");
      cv::imencode(".jpg", m, raw);
      return std::string(raw.begin(), raw.end());
    }
    cv::Mat img(2880, 2304, CV_8UC1);
    cv::randn(img, 90, 25);
    cv::GaussianBlur(img, img, {0, 0}, 6);
    cv::ellipse(img, {1152, 1440}, {500, 1300}, 0, 0, 360, cv::Scalar(200), -1);
    cv::line(img, {700, 1400}, {1600, 1500}, cv::Scalar(60), 8);
    std::vector<uchar> raw;
    cv::imencode(".jpg", img, raw, {cv::IMWRITE_JPEG_QUALITY, 90});
    return std::string(raw.begin(), raw.end());
  }();
  return bytes;
}

void BM_Decode(benchmark::State& state) {
  const data::DecodeOptions opt{false, static_cast<int>(state.range(0))};  // 0: full size
  for (auto _ : state) benchmark::DoNotOptimize(data::decode_image_bytes(image_bytes(), "bench.jpg", opt).pixels.data);
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) ? "reduced-scale (shorter side >= " + std::to_string(state.range(0)) + ")" : "full size");
}
BENCHMARK(BM_Decode)->Arg(0)->Arg(224)->Arg(448)->Unit(benchmark::kMillisecond);

void BM_Preprocess(benchmark::State& state) {
  const auto decoded = data::decode_image_bytes(image_bytes(), "bench.jpg", {false, 224}).pixels;
  data::PreprocessOptions p;
  p.size = 224;
  p.resize = state.range(0) == 1 ? data::ResizeMode::Letterbox : data::ResizeMode::Stretch;
  p.clahe = state.range(0) == 2;
  const data::AugmentOptions aug{true};
  uint64_t seed = 0;
  for (auto _ : state) {
    cv::Mat m = data::preprocess(decoded, p);
    if (state.range(1)) m = data::augment(m, aug, ++seed);
    benchmark::DoNotOptimize(data::to_tensor(m, p.mean, p.std).data_ptr());
  }
  state.SetItemsProcessed(state.iterations());
  static const char* modes[] = {"stretch", "letterbox", "stretch+CLAHE"};
  state.SetLabel(std::string(modes[state.range(0)]) + (state.range(1) ? " + augment" : ""));
}
BENCHMARK(BM_Preprocess)->Args({0, 0})->Args({1, 0})->Args({2, 0})->Args({0, 1})->Unit(benchmark::kMicrosecond);

// Forward pass of EfficientNet-Lite0 at 224 px. range(0): batch; range(1): lever bits
// 1 = inference mode (else no-grad), 2 = channels-last, 4 = BatchNorm folded.
void BM_Forward(benchmark::State& state) {
  const int64_t batch = state.range(0);
  const int levers = static_cast<int>(state.range(1));
  auto net = models::find_model("efficientnet_lite0").build(2);
  net->eval();
  if (levers & 4) models::fold_batchnorms(*net);
  auto x = torch::randn({batch, 3, 224, 224});
  if (levers & 2) models::use_channels_last(*net);
  auto run = [&] {
    if (levers & 1) {
      c10::InferenceMode guard;
      return net->forward(x);
    }
    torch::NoGradGuard guard;
    return net->forward(x);
  };
  run();  // warm-up: oneDNN primitive creation
  for (auto _ : state) benchmark::DoNotOptimize(run().data_ptr());
  state.SetItemsProcessed(state.iterations() * batch);
  std::string label = levers & 1 ? "inference-mode" : "no-grad";
  if (levers & 2) label += " channels-last";
  if (levers & 4) label += " bn-folded";
  state.SetLabel(label);
}
BENCHMARK(BM_Forward)
    ->ArgsProduct({{1, 4, 8, 16, 32}, {0, 1, 2, 4, 5, 6}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Training step (forward + backward + AdamW) of the whole network, batch 16;
// range(0) = 1: channels-last.
void BM_TrainStep(benchmark::State& state) {
  auto net = models::find_model("efficientnet_lite0").build(2);
  net->train();
  if (state.range(0)) models::use_channels_last(*net);
  state.SetLabel(state.range(0) ? "channels-last" : "contiguous");
  torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(1e-3));
  auto x = torch::randn({16, 3, 224, 224});
  auto y = torch::randint(0, 2, {16});
  for (auto _ : state) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_TrainStep)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  fracture::util::configure_runtime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
