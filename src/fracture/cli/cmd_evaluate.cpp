#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fracture/cli/commands.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/data/dataset.h"
#include "fracture/eval/metrics.h"
#include "fracture/eval/report.h"
#include "fracture/train/inference.h"

namespace fracture::cli {
namespace {

// The pointing game, where the split has FracAtlas's fracture boxes; null
// elsewhere (and, where the model cannot play it, the log says why).
nlohmann::json localisation(Predictor& model, const std::vector<data::Sample>& samples) {
  try {
    return model.pointing_game(samples);
  } catch (const std::invalid_argument& e) {
    spdlog::info("localisation not measured: {}", e.what());
  }
  return nullptr;
}

std::string f(const nlohmann::json& x) { return x.is_null() ? std::string("n/a") : fmt::format("{:.3f}", x.get<double>()); }

// A model of more than two classes: its metrics written and summarised on stdout.
void evaluate_multiclass(const std::vector<data::Sample>& samples, const torch::Tensor& probabilities,
                         const std::vector<std::string>& classes, const std::string& model, const std::string& sha256,
                         const std::string& engine, const std::string& split, const eval::EvaluationOptions& opt) {
  eval::MulticlassEvaluationInput in;
  in.samples = samples;
  for (int64_t i = 0; i < probabilities.size(0); ++i) {
    const auto row = probabilities[i];
    in.probabilities.emplace_back(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
  }
  in.class_names = classes;
  in.model = model;
  in.model_sha256 = sha256;
  in.engine = engine;
  in.split = split;
  const auto j = eval::write_multiclass_evaluation(in, opt);
  std::cout << fmt::format("{} split: {} images, {} classes, predicted class: the most probable\n", split,
                           j["n"].get<int>(), classes.size());
  for (const auto& name : eval::multiclass_summary_names()) {
    const auto& v = j["metrics"][name];
    std::cout << fmt::format("  {:<18} {}  (95% CI {} - {})\n", name, f(v["value"]), f(v["ci95_low"]), f(v["ci95_high"]));
  }
  for (const auto& c : classes) {
    const auto& g = j["per_class"][c];
    std::cout << fmt::format("  {:<18} {} images: recall {}, precision {}, roc_auc {}\n", c, g["support"].get<int>(),
                             f(g["recall"]["value"]), f(g["precision"]["value"]), f(g["roc_auc"]["value"]));
  }
  if (j.contains("by_source"))
    for (const auto& [source, g] : j["by_source"].items()) {
      const auto& v = g["metrics"]["accuracy"];
      std::cout << fmt::format("  {:<18} {} images: accuracy {}  (95% CI {} - {})\n", source, g["n"].get<int>(),
                               f(v["value"]), f(v["ci95_low"]), f(v["ci95_high"]));
    }
  spdlog::info("wrote {}/report.md, metrics.json, predictions.csv and confusion.svg", opt.out_dir);
}

}  // namespace

void add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "Score a trained model on a split: metrics with 95% CIs, plots, report");
  struct Args : InferenceFlags {
    std::vector<std::string> data;
    std::string split = "test", out;
    int bootstrap = 1000;
    uint64_t seed = 0;
    double threshold = -1;
    std::vector<std::string> ensemble;
  };
  auto a = std::make_shared<Args>();
  add_inference_flags(cmd, *a);
  cmd->add_option("--data", a->data,
                  "Split manifest (the run's split.csv), or a data set folder; with several sources (a manifest from "
                  "several --data, or --data given again) each is also reported on its own")
      ->required();
  cmd->add_option("--split", a->split, "Which split to score: test, val, train or all")
      ->capture_default_str()
      ->check(CLI::IsMember({"test", "val", "train", "all"}));
  cmd->add_option("-o,--out", a->out,
                  "Folder for metrics.json, report.md, plots (default: <model folder>/eval-<split>; for the "
                  "built-in model, ./eval-<split>)");
  cmd->add_option("--bootstrap", a->bootstrap, "Bootstrap resamples for the confidence intervals (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--seed", a->seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threshold", a->threshold, "Override the model's operating threshold (chosen on validation)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--ensemble", a->ensemble,
                  "More trained models to combine with --model (mean of log-odds); the threshold is then chosen "
                  "on the validation split of --data (Youden's J). Needs --out")
      ->check(CLI::ExistingFile);
  cmd->footer(
      "The threshold is the one stored with the model (chosen on validation); choose it on the\n"
      "validation split, report the test split once.\n\n"
      "Examples:\n  fracture evaluate --model runs/lite0/best.safetensors --data runs/lite0/split.csv --split test\n"
      "  fracture evaluate -m runs/lite0-384/best.safetensors --ensemble runs/lite1-320/best.safetensors \\\n"
      "      --data runs/split.csv --split val -o runs/ensemble/eval-val");
  cmd->callback([a] {
    if (!a->ensemble.empty() && a->out.empty()) throw CLI::ValidationError("--ensemble", "needs --out (there is no one run folder)");
    // Never write into the installed model's folder (no -m, or -m with a built-in model's name).
    const bool built_in_model = a->model.empty() || !std::filesystem::exists(a->model);
    // Every member with its own preprocessing (sizes may differ).
    std::vector<std::unique_ptr<Predictor>> members;
    members.push_back(std::make_unique<Predictor>(predictor_options(*a)));
    a->model = members[0]->model_path();  // the built-in model's path when -m was not given
    for (const auto& path : a->ensemble) {
      auto o = predictor_options(*a);
      o.model = path;
      members.push_back(std::make_unique<Predictor>(o));
      if (members.back()->classes() != members[0]->classes())
        throw std::runtime_error(path + ": its classes differ from " + a->model + "'s");
    }
    const auto& info = members[0]->info();
    data::Dataset d = data::load_datasets(a->data);
    const std::string data_name = fmt::format("{}", fmt::join(a->data, " + "));
    // Two-class sets pair negative with negative whatever their names; types must match by name and order.
    if (d.class_names.size() != info.class_names.size() || (info.class_names.size() > 2 && d.class_names != info.class_names))
      throw std::runtime_error(fmt::format("{}: its classes ({}) are not the model's ({})", data_name,
                                           fmt::join(d.class_names, ", "), fmt::join(info.class_names, ", ")));
    // Every class's probability for every sample (a NaN row: unreadable).
    auto score_all = [&](const std::vector<data::Sample>& samples, const std::string& split) {
      std::vector<torch::Tensor> probs;
      for (size_t k = 0; k < members.size(); ++k) {
        const std::string label = members.size() > 1 ? fmt::format("scoring {} ({}/{})", split, k + 1, members.size()) : "scoring " + split;
        std::vector<std::string> failures;
        probs.push_back(members[k]->probabilities_of(samples, label, &failures));
        if (k == 0)
          for (const auto& f : failures) spdlog::warn("left out: {}", f);
      }
      return train::combine_probabilities(probs).to(torch::kDouble).contiguous();
    };
    // The positive class's probability (two-class models).
    auto score = [&](const std::vector<data::Sample>& samples, const std::string& split) {
      auto col = score_all(samples, split).select(1, 1).contiguous();
      return std::vector<double>(col.data_ptr<double>(), col.data_ptr<double>() + col.numel());
    };
    std::vector<data::Sample> samples = a->split == "all" ? d.samples : d.subset(a->split);
    if (samples.empty()) throw std::runtime_error(data_name + ": no samples in split '" + a->split + "'");
    const std::filesystem::path model_dir = std::filesystem::path(a->model).parent_path();
    eval::EvaluationOptions opt;
    opt.out_dir = !a->out.empty() ? a->out : built_in_model ? "eval-" + a->split : (model_dir / ("eval-" + a->split)).string();
    opt.bootstrap = a->bootstrap;
    opt.seed = a->seed;
    if (members.size() == 1 && !built_in_model) opt.training_metrics = (model_dir / "metrics.jsonl").string();
    std::string model_name = a->model, sha256;
    for (const auto& path : a->ensemble) model_name += " + " + path;
    std::string engine;
    for (const auto& member : members) {
      sha256 += (sha256.empty() ? "" : " + ") + member->sha256();
      engine += (engine.empty() ? "" : " + ") + member->engine();
    }
    if (info.class_names.size() > 2) {
      if (a->threshold >= 0) throw CLI::ValidationError("--threshold", "applies to two-class models only (this one takes the most probable class)");
      evaluate_multiclass(samples, score_all(samples, a->split), info.class_names, model_name, sha256, engine, a->split,
                          opt);
      return;
    }
    eval::EvaluationInput in;
    in.samples = samples;
    in.probabilities = score(samples, a->split);
    if (members.size() == 1) in.localisation = localisation(*members[0], samples);
    in.threshold = info.threshold;
    in.threshold_rule = info.threshold_rule;
    if (a->threshold >= 0) {
      in.threshold = a->threshold;
      in.threshold_rule = "set with --threshold";
    } else if (members.size() > 1) {
      // No member's stored threshold fits the combination: choose one the way
      // training does, on validation.
      auto val = d.subset("val");
      if (val.empty()) throw std::runtime_error(data_name + ": no validation split to choose the ensemble's threshold on; give --threshold");
      auto p = a->split == "val" ? in.probabilities : score(val, "val (for the threshold)");
      std::vector<int> yv;
      std::vector<double> pv;
      for (size_t i = 0; i < val.size(); ++i)
        if (!std::isnan(p[i])) {
          yv.push_back(val[i].label == 1);
          pv.push_back(p[i]);
        }
      in.threshold = eval::choose_threshold("youden", yv, pv);
      in.threshold_rule = fmt::format("youden on validation, ensemble of {}", members.size());
    }
    in.model = model_name;
    in.model_sha256 = sha256;
    in.engine = engine;
    in.split = a->split;
    in.positive_class = info.class_names[1];
    const auto j = eval::write_evaluation(in, opt);
    std::cout << fmt::format("{} split: {} images, {} positive, threshold {:.4f}\n", a->split, j["n"].get<int>(),
                             j["positives"].get<int>(), in.threshold);
    for (const auto& name : {"roc_auc", "average_precision", "sensitivity", "specificity", "accuracy", "f1"}) {
      const auto& v = j["metrics"][name];
      std::cout << fmt::format("  {:<18} {}  (95% CI {} - {})\n", name, f(v["value"]), f(v["ci95_low"]), f(v["ci95_high"]));
    }
    const auto& c = j["confusion"];
    std::cout << fmt::format("  confusion: TP {} FN {} FP {} TN {}\n", c["tp"].get<int>(), c["fn"].get<int>(),
                             c["fp"].get<int>(), c["tn"].get<int>());
    if (j.contains("by_source"))
      for (const auto& [source, g] : j["by_source"].items()) {
        const auto& v = g["roc_auc"];
        std::cout << fmt::format("  {:<18} {} images, {} positive: roc_auc {}  (95% CI {} - {})\n", source,
                                 g["n"].get<int>(), g["positives"].get<int>(), f(v["value"]), f(v["ci95_low"]),
                                 f(v["ci95_high"]));
      }
    if (const auto& loc = in.localisation; !loc.is_null())
      std::cout << fmt::format("  localisation: top cell on a fracture box in {} of {} images, {:.3f} (95% CI {:.3f} - "
                               "{:.3f}; a random cell {:.3f})\n",
                               loc["hits"].get<int>(), loc["images"].get<int>(), loc["hit_rate"]["value"].get<double>(),
                               loc["hit_rate"]["ci95_low"].get<double>(), loc["hit_rate"]["ci95_high"].get<double>(),
                               loc["chance"].get<double>());
    spdlog::info("wrote {}/report.md, metrics.json, predictions.csv and plots", opt.out_dir);
  });
}

}  // namespace fracture::cli
