#pragma once
// Two ways to join runs into one model file, each with its threshold chosen
// again on validation. Weight averaging ("model soups", Wortsman et al.
// 2022): models fine-tuned from the same ImageNet weights, with the same
// frozen stages, on different data, averaged weight by weight into one
// network of the same size; it costs nothing at inference. An ensemble: the
// networks kept side by side in one file, every one run on every image and
// their log-odds averaged; it costs one network's time per member. Issue 16
// measures both on a FracAtlas-only and a combined model (docs/results.md).
// Here, beside the other writers of model files made from models (ONNX,
// int8 calibration), since it scores validation through the Predictor.
#include <map>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"

namespace fracture::exporter {

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

// The same for an ensemble: writes the models' networks as the members of
// one file (train::save_ensemble), in the order given. An ensemble given as
// a member is refused (its members would have to be taken apart).
AverageSummary ensemble_models(const std::vector<std::string>& paths, const std::vector<data::Sample>& val,
                               const std::string& threshold_rule, const std::string& out_path);

}  // namespace fracture::exporter
