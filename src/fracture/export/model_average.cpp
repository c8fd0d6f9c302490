#include "fracture/export/model_average.h"

#include <filesystem>
#include <functional>
#include <stdexcept>

#include <fmt/format.h>

#include "fracture/eval/metrics.h"
#include "fracture/models/name_map.h"
#include "fracture/predictor.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/validation.h"

namespace fracture::exporter {

using namespace fracture::train;  // the model files, their loading and validation scoring
namespace {

// What must agree for a weight average to be one model: the same network,
// classes, pixels in and pooling. The threshold and the training summary
// differ and are chosen again.
nlohmann::json interface_of(const ModelInfo& info) {
  auto j = info.to_json();
  for (const char* k : {"threshold", "threshold_rule", "extra"}) j.erase(k);
  return j;
}

void check_members_agree(const std::vector<LoadedModel>& members, const std::vector<std::string>& paths) {
  const auto first = interface_of(members[0].info);
  for (size_t i = 1; i < members.size(); ++i) {
    const auto other = interface_of(members[i].info);
    for (const auto& [key, value] : first.items())
      if (other.value(key, nlohmann::json()) != value)
        throw std::invalid_argument(fmt::format("{}: its {} is {}, but {}'s is {}; only models of one architecture, "
                                                "classes and preprocessing can be averaged",
                                                paths[i], key, other.value(key, nlohmann::json()).dump(), paths[0],
                                                value.dump()));
  }
}

// The validation probabilities of the model in `path`, in fp32, with the
// rows that could not be read left out (and named in `unreadable`).
struct Scored {
  torch::Tensor probs, labels;
  std::vector<std::string> sources;
};
Scored score_fp32(const std::string& path, const std::vector<data::Sample>& val, std::vector<std::string>& unreadable) {
  PredictorOptions o;
  o.model = path;
  o.precision = "fp32";
  Predictor p(o);
  const auto probs = p.probabilities_of(val, "validation", &unreadable).to(torch::kFloat);
  const auto readable = probs.select(1, 0).isnan().logical_not();
  std::vector<int64_t> labels;
  Scored s;
  for (size_t i = 0; i < val.size(); ++i) {
    if (!readable[static_cast<int64_t>(i)].item<bool>()) continue;
    labels.push_back(val[i].label);
    s.sources.push_back(val[i].source);
  }
  s.probs = probs.index({readable}).contiguous();
  s.labels = torch::tensor(labels, torch::kLong);
  return s;
}

}  // namespace

namespace {

// The joined model's description: the members' shared one, naming them.
ModelInfo joined_info(const std::vector<LoadedModel>& members, const std::vector<std::string>& paths, const char* key) {
  ModelInfo info = members[0].info;
  info.extra = nlohmann::json::object();
  for (size_t i = 0; i < paths.size(); ++i)
    info.extra[key].push_back(
        {{"file", std::filesystem::path(paths[i]).filename().string()}, {"sha256", members[i].sha256}});
  return info;
}

std::vector<LoadedModel> load_members(const std::vector<std::string>& paths, const std::vector<data::Sample>& val,
                                      const std::string& threshold_rule, const char* joining) {
  if (paths.size() < 2) throw std::invalid_argument(std::string(joining) + " needs at least two models");
  if (val.empty()) throw std::invalid_argument(std::string(joining) + " needs validation images to choose the threshold on");
  eval::validate_threshold_rule(threshold_rule);  // before any work
  std::vector<LoadedModel> members;
  for (const auto& path : paths) members.push_back(load_model(path));
  check_members_agree(members, paths);
  return members;
}

// Scores the joined model as predict and evaluate will load it (from a file
// written by `save`), chooses its threshold on validation and writes it to
// out_path. `save` writes under another name first, so that out_path never
// holds a model without its threshold.
AverageSummary score_and_write(ModelInfo info, const std::vector<data::Sample>& val, const std::string& threshold_rule,
                               const std::string& out_path, const std::string& what,
                               const std::function<void(const std::string&, const ModelInfo&)>& save) {
  const std::string unscored = out_path + ".unscored";
  save(unscored, info);
  AverageSummary s;
  Scored v;
  try {
    v = score_fp32(unscored, val, s.unreadable);
  } catch (...) {
    std::filesystem::remove(unscored);
    throw;
  }
  std::filesystem::remove(unscored);
  if (v.labels.numel() == 0) throw std::runtime_error("none of the validation images could be read");
  s.val_images = static_cast<size_t>(v.labels.numel());

  const ValidationScore score = score_validation(v.probs, v.labels, v.sources);
  s.val_roc_auc = score.auc;
  s.val_roc_auc_by_source = score.auc_by_source;
  info.extra.update(validation_summary(score));
  info.threshold = 0.5;
  info.threshold_rule = "default 0.5";
  if (info.class_names.size() == 2) {
    info.threshold = threshold_on_validation(threshold_rule, v.probs, v.labels);
    info.threshold_rule = threshold_rule + " on validation, " + what;
  }
  s.threshold = info.threshold;
  s.threshold_rule = info.threshold_rule;
  save(out_path, info);
  return s;
}

}  // namespace

AverageSummary average_models(const std::vector<std::string>& paths, const std::vector<data::Sample>& val,
                              const std::string& threshold_rule, const std::string& out_path) {
  auto members = load_members(paths, val, threshold_rule, "averaging");
  LoadedModel& avg = members[0];
  models::load_into(*avg.net, average_weights(paths), "the average of " + std::to_string(paths.size()) + " models");
  auto s = score_and_write(joined_info(members, paths, "averaged_models"), val, threshold_rule, out_path,
                           "average of " + std::to_string(paths.size()) + " models",
                           [&](const std::string& path, const ModelInfo& info) { save_model(path, *avg.net, info); });
  s.models = paths.size();
  return s;
}

AverageSummary ensemble_models(const std::vector<std::string>& paths, const std::vector<data::Sample>& val,
                               const std::string& threshold_rule, const std::string& out_path) {
  auto members = load_members(paths, val, threshold_rule, "an ensemble");
  std::vector<models::Classifier> nets;
  for (const auto& m : members) nets.push_back(m.net);
  ModelInfo info = joined_info(members, paths, "ensemble_members");
  info.members = static_cast<int>(nets.size());
  auto s = score_and_write(info, val, threshold_rule, out_path, "ensemble of " + std::to_string(paths.size()) + " models",
                           [&](const std::string& path, const ModelInfo& i) { save_ensemble(path, nets, i); });
  s.models = paths.size();
  return s;
}

}  // namespace fracture::exporter
