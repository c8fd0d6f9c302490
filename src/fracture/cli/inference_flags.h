#pragma once
// Flags that every command running a trained model shares (evaluate,
// predict, serve), as the library's Predictor takes them.
#include <CLI/CLI.hpp>

#include <string>

#include "fracture/data/loader.h"
#include "fracture/predictor.h"

namespace fracture::cli {

struct InferenceFlags {
  std::string model, device = "auto", precision = "auto";
  int batch_size = 16, workers = 2;
  bool tta = false;
  double max_megapixels = static_cast<double>(data::kDefaultMaxPixels) / 1e6;
};

void add_inference_flags(CLI::App* cmd, InferenceFlags& f);

// The flags as the library's Predictor takes them.
PredictorOptions predictor_options(const InferenceFlags& f);

}  // namespace fracture::cli
