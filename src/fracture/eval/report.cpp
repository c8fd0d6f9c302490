#include "fracture/eval/report.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "fracture/data/csv.h"
#include "fracture/eval/metrics.h"
#include "fracture/eval/svg_plot.h"
#include "fracture/util/atomic_file.h"

namespace fracture::eval {

nlohmann::json interval_json(const Interval& iv) {
  auto num = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); };
  return {{"value", num(iv.value)}, {"ci95_low", num(iv.low)}, {"ci95_high", num(iv.high)}};
}

std::string fmt_ci(const nlohmann::json& m) {
  auto f = [](const nlohmann::json& v) { return v.is_null() ? std::string("n/a") : fmt::format("{:.3f}", v.get<double>()); };
  return fmt::format("{} ({} – {})", f(m["value"]), f(m["ci95_low"]), f(m["ci95_high"]));
}

namespace {

// Metrics of a subgroup: the ones that make sense on small groups.
nlohmann::json subgroup(const std::vector<int>& y, const std::vector<double>& p, double t, int boots, uint64_t seed) {
  const auto b = bootstrap_metrics(y, p, t, boots, seed);
  int pos = 0;
  for (int v : y) pos += v;
  return {{"n", y.size()}, {"positives", pos}, {"roc_auc", interval_json(b.at("roc_auc"))},
          {"sensitivity", interval_json(b.at("sensitivity"))}, {"specificity", interval_json(b.at("specificity"))},
          {"accuracy", interval_json(b.at("accuracy"))}};
}

}  // namespace

std::string training_curves_svg(const std::string& metrics_jsonl) {
  Series train_loss{"train loss", {}, {}, "#1f77b4"}, val_loss{"val loss", {}, {}, "#ff7f0e"},
      val_auc{"val ROC-AUC", {}, {}, "#2ca02c", false, true};
  std::istringstream in(util::read_file(metrics_jsonl));
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const double e = j.at("epoch");
    train_loss.x.push_back(e), train_loss.y.push_back(j.at("train_loss"));
    val_loss.x.push_back(e), val_loss.y.push_back(j.at("val_loss"));
    val_auc.x.push_back(e), val_auc.y.push_back(j.at("val_auc"));
  }
  Plot plot{"Training curves", "epoch", "loss / ROC-AUC"};
  plot.auto_range = true;
  plot.series = {train_loss, val_loss, val_auc};
  return render_svg(plot);
}

nlohmann::json write_evaluation(const EvaluationInput& in, const EvaluationOptions& opt) {
  std::filesystem::create_directories(opt.out_dir);
  std::vector<int> y;
  std::vector<double> p;
  std::vector<const data::Sample*> used;
  nlohmann::json unreadable = nlohmann::json::array();
  for (size_t i = 0; i < in.samples.size(); ++i) {
    if (std::isnan(in.probabilities[i])) {
      unreadable.push_back(in.samples[i].path);
      continue;
    }
    y.push_back(in.samples[i].label == 1);
    p.push_back(in.probabilities[i]);
    used.push_back(&in.samples[i]);
  }
  if (y.empty()) throw std::runtime_error("nothing to evaluate: no readable images");
  const double t = in.threshold;
  const auto boot = bootstrap_metrics(y, p, t, opt.bootstrap, opt.seed);
  const Confusion c = confusion_at(y, p, t);

  nlohmann::json out;
  out["model"] = in.model;
  out["model_sha256"] = in.model_sha256;
  out["engine"] = in.engine;
  out["split"] = in.split;
  out["n"] = y.size();
  out["positives"] = std::count(y.begin(), y.end(), 1);
  out["threshold"] = t;
  out["threshold_rule"] = in.threshold_rule;
  out["bootstrap_resamples"] = opt.bootstrap;
  for (const auto& name : metric_names()) out["metrics"][name] = interval_json(boot.at(name));
  out["confusion"] = {{"tp", c.tp}, {"fp", c.fp}, {"tn", c.tn}, {"fn", c.fn}};
  out["unreadable"] = unreadable;

  // Breakdowns by body region and by implant ("hardware") where known.
  std::map<std::string, std::pair<std::vector<int>, std::vector<double>>> by_region, by_hw, by_source;
  for (size_t i = 0; i < used.size(); ++i) {
    if (!used[i]->region.empty()) {
      by_region[used[i]->region].first.push_back(y[i]);
      by_region[used[i]->region].second.push_back(p[i]);
    }
    by_source[used[i]->source].first.push_back(y[i]);
    by_source[used[i]->source].second.push_back(p[i]);
    if (used[i]->hardware >= 0) {
      auto& g = by_hw[used[i]->hardware ? "with implant" : "without implant"];
      g.first.push_back(y[i]);
      g.second.push_back(p[i]);
    }
  }
  for (const auto& [k, v] : by_region) out["by_region"][k] = subgroup(v.first, v.second, t, opt.bootstrap, opt.seed);
  for (const auto& [k, v] : by_hw) out["by_hardware"][k] = subgroup(v.first, v.second, t, opt.bootstrap, opt.seed);
  if (by_source.size() > 1)  // data from several data sets: how the model does on each
    for (const auto& [k, v] : by_source) out["by_source"][k] = subgroup(v.first, v.second, t, opt.bootstrap, opt.seed);

  // Plots.
  Series roc{"ROC", {}, {}};
  for (const auto& pt : roc_curve(y, p)) roc.x.push_back(pt.fpr), roc.y.push_back(pt.tpr);
  const double sens = out["metrics"]["sensitivity"]["value"].is_null() ? 0 : out["metrics"]["sensitivity"]["value"].get<double>();
  const double spec = out["metrics"]["specificity"]["value"].is_null() ? 0 : out["metrics"]["specificity"]["value"].get<double>();
  Plot roc_plot{"ROC curve (" + in.split + ")", "1 - specificity", "sensitivity"};
  roc_plot.series = {roc, Series{"chance", {0, 1}, {0, 1}, "#999999", true},
                     Series{fmt::format("threshold {:.3f}", t), {1 - spec}, {sens}, "#d62728", false, true}};
  roc_plot.notes = {"ROC-AUC " + fmt_ci(out["metrics"]["roc_auc"])};
  Series pr{"precision-recall", {}, {}};
  for (const auto& pt : pr_curve(y, p)) pr.x.push_back(pt.recall), pr.y.push_back(pt.precision);
  const double prevalence = static_cast<double>(out["positives"].get<int64_t>()) / static_cast<double>(y.size());
  Plot pr_plot{"Precision-recall (" + in.split + ")", "recall", "precision"};
  pr_plot.series = {pr, Series{fmt::format("prevalence {:.3f}", prevalence), {0, 1}, {prevalence, prevalence}, "#999999", true}};
  pr_plot.notes = {"AP " + fmt_ci(out["metrics"]["average_precision"])};
  Series cal{"model", {}, {}, "#1f77b4", false, true};
  for (const auto& b : calibration_bins(y, p, 10)) cal.x.push_back(b.mean_prob), cal.y.push_back(b.fraction_positive);
  Plot cal_plot{"Calibration (" + in.split + ")", "mean predicted probability", "fraction fractured"};
  cal_plot.series = {cal, Series{"perfect", {0, 1}, {0, 1}, "#999999", true}};
  cal_plot.notes = {"ECE " + fmt_ci(out["metrics"]["ece"]), "Brier " + fmt_ci(out["metrics"]["brier"])};
  util::write_file_atomic(opt.out_dir + "/roc.svg", render_svg(roc_plot));
  util::write_file_atomic(opt.out_dir + "/pr.svg", render_svg(pr_plot));
  util::write_file_atomic(opt.out_dir + "/calibration.svg", render_svg(cal_plot));
  const bool curves = !opt.training_metrics.empty() && std::filesystem::exists(opt.training_metrics);
  if (curves) util::write_file_atomic(opt.out_dir + "/training_curves.svg", training_curves_svg(opt.training_metrics));

  // Predictions, for anyone who wants to compute more.
  std::string csv = "path,label,probability,predicted,region,hardware,source\n";
  for (size_t i = 0; i < used.size(); ++i)
    csv += fmt::format("{},{},{:.6f},{},{},{},{}\n", data::csv_escape(used[i]->path), y[i], p[i], p[i] >= t ? 1 : 0,
                       data::csv_escape(used[i]->region), used[i]->hardware < 0 ? "" : std::to_string(used[i]->hardware),
                       data::csv_escape(used[i]->source));
  util::write_file_atomic(opt.out_dir + "/predictions.csv", csv);
  if (!in.localisation.is_null()) out["localisation"] = in.localisation;
  util::write_file_atomic(opt.out_dir + "/metrics.json", out.dump(2));

  // The report.
  std::ostringstream md;
  md << "# Evaluation: " << in.split << " split\n\n"
     << "Model `" << in.model << "` (" << in.engine << "); " << y.size() << " images, " << out["positives"] << " " << in.positive_class
     << " (prevalence " << fmt::format("{:.1f}%", 100 * prevalence) << "). Operating threshold " << fmt::format("{:.4f}", t)
     << " (" << in.threshold_rule << "). 95% confidence intervals: percentile bootstrap, " << opt.bootstrap
     << " resamples. All metrics come from predicted probabilities; threshold-dependent ones use the threshold "
        "above.\n\n"
     << "*Research use only - not a medical device.*\n\n| metric | value (95% CI) |\n|---|---|\n";
  for (const auto& name : metric_names()) md << "| " << name << " | " << fmt_ci(out["metrics"][name]) << " |\n";
  md << "\n**Confusion matrix** at threshold " << fmt::format("{:.4f}", t) << ":\n\n"
     << "| | predicted " << in.positive_class << " | predicted not |\n|---|---|---|\n"
     << "| actually " << in.positive_class << " | " << c.tp << " | " << c.fn << " |\n"
     << "| actually not | " << c.fp << " | " << c.tn << " |\n\n";
  auto breakdown = [&](const char* title, const nlohmann::json& groups) {
    if (groups.is_null()) return;
    md << "### By " << title << "\n\n| group | n | positives | ROC-AUC | sensitivity | specificity |\n|---|---|---|---|---|---|\n";
    for (const auto& [k, g] : groups.items())
      md << "| " << k << " | " << g["n"] << " | " << g["positives"] << " | " << fmt_ci(g["roc_auc"]) << " | "
         << fmt_ci(g["sensitivity"]) << " | " << fmt_ci(g["specificity"]) << " |\n";
    md << "\n";
  };
  breakdown("source (data set)", out["by_source"]);
  breakdown("body region", out["by_region"]);
  breakdown("implant (hardware)", out["by_hardware"]);
  if (const auto& loc = in.localisation; !loc.is_null())
    md << "**Localisation** (pointing game): the strongest cell of the fracture map (the peak of `--cam`) lies on a "
          "fracture box in "
       << loc["hits"] << " of " << loc["images"] << " fractured images with boxes: " << fmt_ci(loc["hit_rate"])
       << fmt::format("; a random cell of the {}x{} grid would in {:.3f}.\n\n", loc["grid"][0].get<int>(),
                      loc["grid"][1].get<int>(), loc["chance"].get<double>());
  md << "![ROC](roc.svg) ![Precision-recall](pr.svg) ![Calibration](calibration.svg)\n";
  if (curves) md << "\n![Training curves](training_curves.svg)\n";
  if (!unreadable.empty()) md << "\n" << unreadable.size() << " unreadable images were left out (listed in metrics.json).\n";
  util::write_file_atomic(opt.out_dir + "/report.md", md.str());
  return out;
}

}  // namespace fracture::eval
