#pragma once
// Weight averaging across runs ("model soups", Wortsman et al. 2022): models
// fine-tuned from the same ImageNet weights, with the same frozen stages, on
// different data, averaged weight by weight into one network of the same
// size. It costs nothing at inference, unlike an ensemble (evaluate
// --ensemble), which runs every member. Issue 16 measures whether the mean
// of a FracAtlas-only and a combined model keeps what each knows
// (docs/results.md).
#include <map>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"

namespace fracture::train {

struct AverageSummary {
  size_t models = 0;
  size_t val_images = 0;                 // readable validation images scored
  std::vector<std::string> unreadable;   // one message per validation file skipped, naming it
  double val_roc_auc = 0;                // the selection score (train/validation.h)
  std::map<std::string, double> val_roc_auc_by_source;  // with more than one source
  double threshold = 0.5;
  std::string threshold_rule;
};

// Writes to `out_path` (atomically) the uniform mean of the weights of the
// models in `paths`, and the operating threshold chosen by `threshold_rule`
// (eval::choose_threshold: youden, sensitivity:S, fixed:T) on `val`, scored
// in fp32. The models must agree in architecture, classes, preprocessing and
// pooling; throws naming the file that does not. The description names the
// members and their sha256; an int8 calibration is not carried over (the
// ranges belong to other weights).
AverageSummary average_models(const std::vector<std::string>& paths, const std::vector<data::Sample>& val,
                              const std::string& threshold_rule, const std::string& out_path);

}  // namespace fracture::train
