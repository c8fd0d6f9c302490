#pragma once
// Validation scores when the data come from several sources (data sets).
//
// Selection rule, fixed before any multi-source run (issue 16): a run is
// scored by the mean of its per-source ROC-AUCs, each source weighing the
// same whatever its size. A pooled AUC would let the larger source decide,
// and would reward a model that tells the sources apart (their base rates
// differ: 18% fractured in FracAtlas, 37% in bone-fracture-yolo) rather than
// the fractures. With one source the mean is that source's ROC-AUC: runs on
// one data set are scored exactly as before.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace fracture::train {

struct ValidationScore {
  double auc = 0;         // the selection score: mean of the per-source ROC-AUCs
  double pooled_auc = 0;  // every row together
  double ap = 0;          // average precision, pooled
  std::map<std::string, double> auc_by_source;  // with more than one source
};

// probs [n, classes], labels [n], the source of each row. Two classes: the
// positive class's ROC-AUC; more: the mean one-vs-rest ROC-AUC. A source
// whose rows hold a single class has no AUC and is left out of the mean.
ValidationScore score_validation(const torch::Tensor& probs, const torch::Tensor& labels,
                                 const std::vector<std::string>& row_sources);

// What a model file records of its validation: val_roc_auc (the selection
// score), val_average_precision and, with several sources, each one's and the
// pooled ROC-AUC.
nlohmann::json validation_summary(const ValidationScore& score);

// The positive class's operating threshold chosen by `rule`
// (eval::choose_threshold) on two-class probs [n, 2] (float) and labels [n].
double threshold_on_validation(const std::string& rule, const torch::Tensor& probs, const torch::Tensor& labels);

// "fracatlas=1,bone-fracture-yolo=0.5" -> {source: weight}; empty -> {}.
// A key may name one class of a source, SOURCE/CLASS
// ("bone-fracture-yolo/non_fractured=0.5": that set's presumed negatives
// drawn half as often). Throws std::invalid_argument naming the bad item.
std::map<std::string, double> parse_source_weights(const std::string& text);

// The key that names one class of a source: "SOURCE/CLASS".
std::string source_class_key(const std::string& source, const std::string& class_name);

// A training image's sampling weight under parse_source_weights' map: its
// SOURCE/CLASS key if given, else its SOURCE key, else 1.
double source_weight_of(const std::map<std::string, double>& weights, const std::string& source,
                        const std::string& class_name);

}  // namespace fracture::train
