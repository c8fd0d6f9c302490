#pragma once
// Metrics of a model with more than two classes (fracture types), from its
// predicted probabilities. The predicted class is the arg-max (the first of
// tied maxima, as numpy's argmax). Definitions follow scikit-learn's, which
// the reference tests check against:
//   accuracy, balanced_accuracy (mean recall over the classes present in the
//   truth), macro_f1 (over the classes in the truth or the predictions),
//   top2_accuracy (top_k_accuracy_score: among tied probabilities the higher
//   class index ranks first), cohen_kappa, macro_roc_auc (mean of the
//   one-vs-rest ROC-AUCs of the classes present), and per class
//   "precision/NAME", "recall/NAME", "f1/NAME", "roc_auc/NAME".
#include <map>
#include <string>
#include <vector>

#include "fracture/eval/metrics.h"

namespace fracture::eval {

using ProbabilityRows = std::vector<std::vector<double>>;  // one row of class probabilities per image

int predicted_class(const std::vector<double>& row);
// counts[true][predicted], classes x classes.
std::vector<std::vector<int64_t>> confusion_matrix(const std::vector<int>& labels, const std::vector<int>& predicted,
                                                   int classes);

// Labels must lie in [0, class_names.size()) and every row hold one
// probability per class; throws std::invalid_argument otherwise.
std::map<std::string, double> multiclass_metrics(const std::vector<int>& labels, const ProbabilityRows& probs,
                                                 const std::vector<std::string>& class_names);
// The summary metrics, in reporting order (per-class ones are keyed by class).
const std::vector<std::string>& multiclass_summary_names();
const std::vector<std::string>& per_class_metric_names();  // precision, recall, f1, roc_auc

// Percentile bootstrap 95% intervals of every multiclass metric, resampling
// images as bootstrap_metrics does; deterministic for a seed.
std::map<std::string, Interval> bootstrap_multiclass_metrics(const std::vector<int>& labels, const ProbabilityRows& probs,
                                                             const std::vector<std::string>& class_names,
                                                             int resamples = 1000, uint64_t seed = 0, double level = 0.95);

}  // namespace fracture::eval
