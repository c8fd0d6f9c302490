#pragma once
// Flags that every command running a trained model shares (evaluate,
// predict, later serve), and the loading they imply.
#include <CLI/CLI.hpp>

#include <string>

#include "fracture/data/loader.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"

namespace fracture::cli {

struct InferenceFlags {
  std::string model, device = "auto";
  int batch_size = 16, workers = 2;
  bool tta = false;
  double max_megapixels = static_cast<double>(data::kDefaultMaxPixels) / 1e6;
};

void add_inference_flags(CLI::App* cmd, InferenceFlags& f);

// The flags as the library's Predictor takes them.
PredictorOptions predictor_options(const InferenceFlags& f);

struct ReadyModel {
  train::LoadedModel model;
  torch::Device device{torch::kCPU};
  data::LoaderOptions loader;  // the model's own preprocessing, batch size, workers
};
// Fills in f.model with the built-in model's path when it was not given.
ReadyModel load_for_inference(InferenceFlags& f);

}  // namespace fracture::cli
