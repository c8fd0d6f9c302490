#include "fracture/export/int8_calibration.h"

#include <cmath>
#include <stdexcept>

#include "fracture/data/loader.h"
#include "fracture/eval/metrics.h"
#include "fracture/eval/multiclass.h"
#include "fracture/models/onednn_body.h"
#include "fracture/predictor.h"

namespace fracture::exporter {

namespace {

// Up to `count` of `samples`, evenly spaced, in their order.
std::vector<data::Sample> spread(const std::vector<data::Sample>& samples, size_t count) {
  if (samples.size() <= count) return samples;
  std::vector<data::Sample> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) out.push_back(samples[i * samples.size() / count]);
  return out;
}

// ROC-AUC of a two-class model's positive class, or the macro mean of the
// one-vs-rest ROC-AUCs (evaluate's); the predicted labels as `decide` gives them.
struct Scored {
  double auc = 0;
  std::vector<int> predicted;
};
Scored score(const torch::Tensor& probabilities, const std::vector<int>& labels,
             const std::vector<std::string>& class_names, double threshold) {
  const auto p = probabilities.to(torch::kDouble).contiguous();
  eval::ProbabilityRows rows;
  for (int64_t i = 0; i < p.size(0); ++i) rows.emplace_back(p[i].data_ptr<double>(), p[i].data_ptr<double>() + p.size(1));
  Scored s;
  const bool binary = class_names.size() == 2;
  for (const auto& row : rows) s.predicted.push_back(binary ? row[1] >= threshold : eval::predicted_class(row));
  if (binary) {
    std::vector<double> positive;
    for (const auto& row : rows) positive.push_back(row[1]);
    s.auc = eval::roc_auc(labels, positive);
  } else {
    s.auc = eval::multiclass_metrics(labels, rows, class_names).at("macro_roc_auc");
  }
  return s;
}

// The int8 accuracy check of a calibrated model file.
Int8Check check_int8(const std::string& model_path, const std::vector<data::Sample>& samples,
                     const std::string& split) {
  PredictorOptions o{model_path};
  o.device = "cpu";
  o.precision = "fp32";
  Predictor fp32(o);
  o.precision = "int8";
  Predictor int8(o);
  const auto p32 = fp32.probabilities_of(samples, "int8 check, fp32");
  const auto p8 = int8.probabilities_of(samples, "int8 check, int8");
  // Unreadable samples (NaN rows) are left out of both.
  const auto readable = torch::isfinite(p32).all(1).logical_and(torch::isfinite(p8).all(1));
  std::vector<int> labels;
  std::vector<int64_t> rows;
  std::map<std::string, std::vector<size_t>> by_source;  // positions in `rows`
  for (size_t i = 0; i < samples.size(); ++i)
    if (readable[static_cast<int64_t>(i)].item<bool>()) {
      by_source[samples[i].source].push_back(labels.size());
      labels.push_back(samples[i].label);
      rows.push_back(static_cast<int64_t>(i));
    }
  if (labels.empty()) throw std::runtime_error("int8 check: none of the " + split + " images could be read");
  const auto index = torch::tensor(rows);
  const auto threshold = fp32.info().threshold;
  const auto q32 = p32.index_select(0, index), q8 = p8.index_select(0, index);
  const auto a = score(q32, labels, fp32.classes(), threshold);
  const auto b = score(q8, labels, fp32.classes(), threshold);
  Int8Check c;
  c.split = split;
  c.images = labels.size();
  c.roc_auc_fp32 = a.auc;
  c.roc_auc_int8 = b.auc;
  for (size_t i = 0; i < labels.size(); ++i) c.labels_changed += a.predicted[i] != b.predicted[i];
  if (by_source.size() > 1)
    for (const auto& [source, positions] : by_source) {
      std::vector<int64_t> at(positions.begin(), positions.end());
      std::vector<int> y;
      for (size_t k : positions) y.push_back(labels[k]);
      const auto t = torch::tensor(at);
      c.roc_auc_by_source[source] = {score(q32.index_select(0, t), y, fp32.classes(), threshold).auc,
                                     score(q8.index_select(0, t), y, fp32.classes(), threshold).auc};
    }
  c.passed = int8_check_passes(c);
  c.cpu = models::int8_cpu_class();
  return c;
}

}  // namespace

bool int8_check_passes(const Int8Check& check) {
  const auto within = [](double fp32, double int8) {
    return std::isfinite(fp32) && std::isfinite(int8) && std::abs(int8 - fp32) <= kInt8AucTolerance;
  };
  if (!within(check.roc_auc_fp32, check.roc_auc_int8)) return false;
  for (const auto& [source, auc] : check.roc_auc_by_source)
    if (std::isfinite(auc.first) && !within(auc.first, auc.second)) return false;  // NaN: a source of one class
  return true;
}

CalibrationSummary calibrate_int8(train::LoadedNetworks& model, const std::vector<data::Sample>& samples,
                                  const CalibrationOptions& options) {
  if (options.max_images == 0) throw std::invalid_argument("calibration needs at least one image");
  if (!(options.percentile > 50 && options.percentile <= 100))
    throw std::invalid_argument("calibration percentile must be above 50 and at most 100");
  for (auto& net : model.nets) net->eval();
  data::LoaderOptions loading;
  loading.batch_size = 16;
  loading.preprocess = model.info.preprocess;
  data::DataLoader loader(spread(samples, options.max_images), loading);
  loader.start_epoch(0);
  std::vector<std::vector<float>> member_ranges(model.nets.size());
  CalibrationSummary summary;
  while (auto batch = loader.next()) {
    for (const auto& f : batch->failures) summary.unreadable.push_back(f.second);
    if (batch->empty()) continue;
    for (size_t k = 0; k < model.nets.size(); ++k)
      member_ranges[k] = models::int8_activation_ranges(*model.nets[k], batch->images, std::move(member_ranges[k]),
                                                        options.percentile);
    summary.images += batch->indices.size();
  }
  if (summary.images == 0) throw std::runtime_error("calibration: none of the images could be read");
  std::vector<float> ranges;  // stored as one list: the members' one after another
  for (const auto& r : member_ranges) ranges.insert(ranges.end(), r.begin(), r.end());
  summary.activations = ranges.size();
  model.info.extra[train::kInt8CalibrationKey] = {{"activation_max", ranges},
                                           {"images", summary.images},
                                           {"percentile", options.percentile},
                                           {"data", options.data}};
  return summary;
}

CalibrationSummary calibrate_int8_file(const std::string& model_path, const std::vector<data::Sample>& samples,
                                       const CalibrationOptions& options, const std::string& out_path,
                                       const std::vector<data::Sample>& check_samples,
                                       const std::string& check_split) {
  auto model = train::load_networks(model_path);
  if (auto why = models::onednn_body_unsupported(*model.nets[0], models::Precision::fp32);
      !why.empty() && why.find("no oneDNN") == std::string::npos)
    throw std::invalid_argument(model_path + " cannot run in int8: " + why);
  auto summary = calibrate_int8(model, samples, options);
  const auto save = [&] {
    if (model.nets.size() == 1) train::save_model(out_path, *model.nets[0], model.info);
    else train::save_ensemble(out_path, model.nets, model.info);
  };
  save();
  if (check_samples.empty()) {
    summary.no_check_reason = "no check images given";
    return summary;
  }
  summary.no_check_reason = models::onednn_body_unsupported(*model.nets[0], models::Precision::int8);
  if (!summary.no_check_reason.empty()) return summary;
  summary.check = check_int8(out_path, check_samples, check_split);
  const auto& c = *summary.check;
  model.info.extra[train::kInt8CalibrationKey]["check"] = {
      {"split", c.split},         {"images", c.images},
      {"roc_auc_fp32", c.roc_auc_fp32}, {"roc_auc_int8", c.roc_auc_int8},
      {"labels_changed", c.labels_changed}, {"tolerance", kInt8AucTolerance},
      {"passed", c.passed},       {"cpu", c.cpu}};
  for (const auto& [source, auc] : c.roc_auc_by_source)
    model.info.extra[train::kInt8CalibrationKey]["check"]["by_source"][source] = {{"roc_auc_fp32", auc.first},
                                                                           {"roc_auc_int8", auc.second}};
  save();
  return summary;
}

}  // namespace fracture::exporter
