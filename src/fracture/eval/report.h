#pragma once
// An evaluation as files: metrics.json (for machines), report.md with
// plots (for people), predictions.csv (for further analysis).
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/eval/metrics.h"
#include "fracture/eval/multiclass.h"

namespace fracture::eval {

struct EvaluationInput {
  std::vector<data::Sample> samples;
  std::vector<double> probabilities;  // positive class; NaN where the image was unreadable
  double threshold = 0.5;
  std::string threshold_rule;
  std::string model;  // path or name, for the report
  std::string model_sha256;  // of each model file, joined with " + " for an ensemble
  std::string engine;  // how the network ran (Predictor::engine(): the precision among others)
  std::string split;  // "test", "val", ...
  std::string positive_class = "fractured";
  nlohmann::json localisation;  // explain::PointingGame::to_json(), or null where not played
};

struct EvaluationOptions {
  std::string out_dir;
  int bootstrap = 1000;
  uint64_t seed = 0;
  std::string training_metrics;  // metrics.jsonl of the run, for the training-curves plot ("" = none)
};

// Computes every metric with a bootstrap 95% CI, the confusion matrix at the
// threshold, breakdowns by source (with more than one), region and hardware
// where known; writes
// metrics.json (with the input's localisation, if any), predictions.csv,
// roc.svg, pr.svg, calibration.svg, [training_curves.svg] and report.md into
// out_dir. Returns metrics.json.
nlohmann::json write_evaluation(const EvaluationInput& input, const EvaluationOptions& options);

// A model of more than two classes (fracture types): the multiclass metrics
// with bootstrap 95% CIs, per-class precision / recall / F1 / ROC-AUC, the
// confusion matrix (counts and row-normalised, confusion.svg), each source
// apart when there are several; writes metrics.json, predictions.csv (every
// class's probability), confusion.svg, [training_curves.svg] and report.md.
struct MulticlassEvaluationInput {
  std::vector<data::Sample> samples;
  ProbabilityRows probabilities;  // one row per sample; a NaN row: unreadable
  std::vector<std::string> class_names;
  std::string model, model_sha256, split;
  std::string engine;  // how the network ran (Predictor::engine())
};
nlohmann::json write_multiclass_evaluation(const MulticlassEvaluationInput& input, const EvaluationOptions& options);

// {"value", "ci95_low", "ci95_high"}, null where undefined; and as text "0.912 (0.880 – 0.941)".
nlohmann::json interval_json(const Interval& iv);
std::string fmt_ci(const nlohmann::json& interval);

// The training-curves plot alone (train/val loss, val ROC-AUC per epoch).
std::string training_curves_svg(const std::string& metrics_jsonl);

}  // namespace fracture::eval
