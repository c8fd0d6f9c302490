#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/data/dataset.h"
#include "fracture/data/loader.h"
#include "fracture/eval/report.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"

namespace fracture::cli {

void add_evaluate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "Score a trained model on a split: metrics with 95% CIs, plots, report");
  struct Args : InferenceFlags {
    std::string data, split = "test", out;
    int bootstrap = 1000;
    uint64_t seed = 0;
    double threshold = -1;
  };
  auto a = std::make_shared<Args>();
  add_inference_flags(cmd, *a);
  cmd->add_option("--data", a->data, "Split manifest (the run's split.csv)")->required();
  cmd->add_option("--split", a->split, "Which split to score: test, val, train or all")->capture_default_str();
  cmd->add_option("-o,--out", a->out, "Folder for metrics.json, report.md, plots (default: <model folder>/eval-<split>)");
  cmd->add_option("--bootstrap", a->bootstrap, "Bootstrap resamples for the confidence intervals")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threshold", a->threshold, "Override the model's operating threshold (chosen on validation)");
  cmd->footer(
      "The threshold is the one stored with the model (chosen on validation); choose it on the\n"
      "validation split, report the test split once.\n\n"
      "Example:\n  fracture evaluate --model runs/lite0/best.safetensors --data runs/lite0/split.csv --split test");
  cmd->callback([a] {
    auto [m, device, lo] = load_for_inference(*a);
    data::Dataset d = data::load_dataset(a->data);
    std::vector<data::Sample> samples = a->split == "all" ? d.samples : d.subset(a->split);
    if (samples.empty()) throw std::runtime_error(a->data + ": no samples in split '" + a->split + "'");
    if (m.info.class_names.size() != 2) throw std::runtime_error("evaluate reports binary metrics; this model has " +
                                                                 std::to_string(m.info.class_names.size()) + " classes");
    data::DataLoader loader(samples, lo);
    auto probs = train::predict_probabilities(*m.net, loader, device, a->tta, "scoring " + a->split);
    for (const auto& f : loader.stats().failures) spdlog::warn("left out: {}", f);
    eval::EvaluationInput in;
    in.samples = samples;
    auto col = probs.select(1, 1).contiguous();
    in.probabilities.assign(col.data_ptr<float>(), col.data_ptr<float>() + col.numel());
    in.threshold = a->threshold >= 0 ? a->threshold : m.info.threshold;
    in.threshold_rule = a->threshold >= 0 ? "set with --threshold" : m.info.threshold_rule;
    in.model = a->model;
    in.split = a->split;
    in.positive_class = m.info.class_names[1];
    eval::EvaluationOptions opt;
    const std::filesystem::path model_dir = std::filesystem::path(a->model).parent_path();
    opt.out_dir = a->out.empty() ? (model_dir / ("eval-" + a->split)).string() : a->out;
    opt.bootstrap = a->bootstrap;
    opt.seed = a->seed;
    opt.training_metrics = (model_dir / "metrics.jsonl").string();
    const auto j = eval::write_evaluation(in, opt);
    std::cout << fmt::format("{} split: {} images, {} positive, threshold {:.4f}\n", a->split, j["n"].get<int>(),
                             j["positives"].get<int>(), in.threshold);
    for (const auto& name : {"roc_auc", "average_precision", "sensitivity", "specificity", "accuracy", "f1"}) {
      const auto& v = j["metrics"][name];
      auto f = [](const nlohmann::json& x) { return x.is_null() ? std::string("n/a") : fmt::format("{:.3f}", x.get<double>()); };
      std::cout << fmt::format("  {:<18} {}  (95% CI {} - {})\n", name, f(v["value"]), f(v["ci95_low"]), f(v["ci95_high"]));
    }
    const auto& c = j["confusion"];
    std::cout << fmt::format("  confusion: TP {} FN {} FP {} TN {}\n", c["tp"].get<int>(), c["fn"].get<int>(),
                             c["fp"].get<int>(), c["tn"].get<int>());
    spdlog::info("wrote {}/report.md, metrics.json, predictions.csv and plots", opt.out_dir);
  });
}

}  // namespace fracture::cli
