// The evaluation of a model of more than two classes (fracture types).
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "fracture/data/csv.h"
#include "fracture/eval/multiclass.h"
#include "fracture/eval/report.h"
#include "fracture/eval/svg_plot.h"
#include "fracture/util/atomic_file.h"

namespace fracture::eval {
namespace {

bool readable(const std::vector<double>& row) {
  for (double v : row)
    if (std::isnan(v)) return false;
  return !row.empty();
}

// The summary metrics of a group of images (a source), with their CIs.
nlohmann::json summary(const std::vector<int>& y, const ProbabilityRows& p, const std::vector<std::string>& names,
                       const EvaluationOptions& opt) {
  const auto b = bootstrap_multiclass_metrics(y, p, names, opt.bootstrap, opt.seed);
  nlohmann::json j{{"n", y.size()}};
  for (const auto& name : multiclass_summary_names()) j["metrics"][name] = interval_json(b.at(name));
  return j;
}

}  // namespace

nlohmann::json write_multiclass_evaluation(const MulticlassEvaluationInput& in, const EvaluationOptions& opt) {
  std::filesystem::create_directories(opt.out_dir);
  const auto& names = in.class_names;
  const int k = static_cast<int>(names.size());
  std::vector<int> y;
  ProbabilityRows p;
  std::vector<const data::Sample*> used;
  nlohmann::json unreadable = nlohmann::json::array();
  for (size_t i = 0; i < in.samples.size(); ++i) {
    if (!readable(in.probabilities[i])) {
      unreadable.push_back(in.samples[i].path);
      continue;
    }
    y.push_back(in.samples[i].label);
    p.push_back(in.probabilities[i]);
    used.push_back(&in.samples[i]);
  }
  if (y.empty()) throw std::runtime_error("nothing to evaluate: no readable images");
  const auto boot = bootstrap_multiclass_metrics(y, p, names, opt.bootstrap, opt.seed);
  std::vector<int> predicted;
  for (const auto& row : p) predicted.push_back(predicted_class(row));
  const auto counts = confusion_matrix(y, predicted, k);

  nlohmann::json out;
  out["model"] = in.model;
  out["model_sha256"] = in.model_sha256;
  out["engine"] = in.engine;
  out["split"] = in.split;
  out["n"] = y.size();
  out["classes"] = names;
  out["bootstrap_resamples"] = opt.bootstrap;
  out["decision"] = "arg-max of the class probabilities";
  for (const auto& name : multiclass_summary_names()) out["metrics"][name] = interval_json(boot.at(name));
  for (int c = 0; c < k; ++c) {
    auto& j = out["per_class"][names[c]];
    j["support"] = std::count(y.begin(), y.end(), c);
    for (const auto& metric : per_class_metric_names()) j[metric] = interval_json(boot.at(metric + "/" + names[c]));
  }
  nlohmann::json normalised = nlohmann::json::array();
  for (const auto& row : counts) {
    int64_t total = 0;
    for (auto v : row) total += v;
    nlohmann::json r = nlohmann::json::array();
    for (auto v : row) r.push_back(total ? static_cast<double>(v) / static_cast<double>(total) : 0.0);
    normalised.push_back(r);
  }
  out["confusion"] = {{"rows", "true class"}, {"columns", "predicted class"}, {"counts", counts},
                      {"row_normalised", normalised}};
  out["unreadable"] = unreadable;

  std::map<std::string, std::pair<std::vector<int>, ProbabilityRows>> by_source;
  for (size_t i = 0; i < used.size(); ++i) {
    by_source[used[i]->source].first.push_back(y[i]);
    by_source[used[i]->source].second.push_back(p[i]);
  }
  if (by_source.size() > 1)
    for (const auto& [source, g] : by_source) out["by_source"][source] = summary(g.first, g.second, names, opt);

  util::write_file_atomic(opt.out_dir + "/confusion.svg",
                          render_confusion_svg("Confusion matrix (" + in.split + "), share of each true class", names, counts));
  const bool curves = !opt.training_metrics.empty() && std::filesystem::exists(opt.training_metrics);
  if (curves) util::write_file_atomic(opt.out_dir + "/training_curves.svg", training_curves_svg(opt.training_metrics));

  std::string csv = "path,label,predicted";
  for (const auto& name : names) csv += ",p_" + data::csv_escape(name);
  csv += ",source\n";
  for (size_t i = 0; i < used.size(); ++i) {
    csv += data::csv_escape(used[i]->path) + "," + data::csv_escape(names[y[i]]) + "," + data::csv_escape(names[predicted[i]]);
    for (double v : p[i]) csv += fmt::format(",{:.6f}", v);
    csv += "," + data::csv_escape(used[i]->source) + "\n";
  }
  util::write_file_atomic(opt.out_dir + "/predictions.csv", csv);
  util::write_file_atomic(opt.out_dir + "/metrics.json", out.dump(2));

  std::ostringstream md;
  md << "# Evaluation: " << in.split << " split\n\n"
     << "Model `" << in.model << "` (" << in.engine << "); " << y.size() << " images, " << k
     << " classes. The predicted class is the most probable one. 95% confidence intervals: percentile bootstrap, "
     << opt.bootstrap << " resamples. ROC-AUCs are one-vs-rest, from the predicted probabilities.\n\n"
     << "*Research use only - not a medical device.*\n\n| metric | value (95% CI) |\n|---|---|\n";
  for (const auto& name : multiclass_summary_names()) md << "| " << name << " | " << fmt_ci(out["metrics"][name]) << " |\n";
  md << "\n### By class\n\n| class | support | precision | recall | F1 | ROC-AUC (one-vs-rest) |\n|---|---|---|---|---|---|\n";
  for (const auto& name : names) {
    const auto& j = out["per_class"][name];
    md << "| " << name << " | " << j["support"] << " | " << fmt_ci(j["precision"]) << " | " << fmt_ci(j["recall"])
       << " | " << fmt_ci(j["f1"]) << " | " << fmt_ci(j["roc_auc"]) << " |\n";
  }
  md << "\n### Confusion matrix (counts; rows true, columns predicted)\n\n| true \\ predicted |";
  for (const auto& name : names) md << " " << name << " |";
  md << "\n|---|";
  for (int c = 0; c < k; ++c) md << "---|";
  md << "\n";
  for (int r = 0; r < k; ++r) {
    md << "| " << names[r] << " |";
    for (int c = 0; c < k; ++c) md << " " << counts[r][c] << " |";
    md << "\n";
  }
  md << "\n![Confusion matrix, row-normalised](confusion.svg)\n";
  if (out.contains("by_source")) {
    md << "\n### By source (data set)\n\n| source | n | accuracy | balanced accuracy | macro ROC-AUC |\n|---|---|---|---|---|\n";
    for (const auto& [source, g] : out["by_source"].items())
      md << "| " << source << " | " << g["n"] << " | " << fmt_ci(g["metrics"]["accuracy"]) << " | "
         << fmt_ci(g["metrics"]["balanced_accuracy"]) << " | " << fmt_ci(g["metrics"]["macro_roc_auc"]) << " |\n";
  }
  if (curves) md << "\n![Training curves](training_curves.svg)\n";
  if (!unreadable.empty()) md << "\n" << unreadable.size() << " unreadable images were left out (listed in metrics.json).\n";
  util::write_file_atomic(opt.out_dir + "/report.md", md.str());
  return out;
}

}  // namespace fracture::eval
