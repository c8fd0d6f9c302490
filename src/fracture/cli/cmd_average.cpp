#include <spdlog/spdlog.h>

#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/data/dataset.h"
#include "fracture/eval/metrics.h"
#include "fracture/export/model_average.h"

namespace fracture::cli {

namespace {

using Join = exporter::AverageSummary (*)(const std::vector<std::string>&, const std::vector<data::Sample>&,
                                       const std::string&, const std::string&);

// `average` and `ensemble` take the same arguments and say the same things.
void add_join_command(CLI::App& app, const std::string& name, const std::string& description, const std::string& what,
                      const std::string& footer, Join join) {
  struct Args {
    std::vector<std::string> models;
    std::string data, split = "val", threshold = "youden", out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(name, description);
  cmd->add_option("models", a->models, "Model files (.safetensors) of one architecture, classes and preprocessing")
      ->required()
      ->check(CLI::ExistingFile)
      ->expected(2, -1);
  cmd->add_option("--data", a->data, "Split manifest whose validation images choose the threshold")->required();
  cmd->add_option("--split", a->split, "Which split chooses the threshold")
      ->capture_default_str()
      ->check(CLI::IsMember({"val", "train", "test"}));
  cmd->add_option("--threshold", a->threshold, "Operating threshold rule: youden, sensitivity:S or fixed:T")
      ->capture_default_str()
      ->check([](const std::string& rule) {
        try {
          eval::validate_threshold_rule(rule);
          return std::string();
        } catch (const std::exception& e) {
          return std::string(e.what());
        }
      });
  cmd->add_option("-o,--out", a->out, "The model to write (.safetensors)")->required();
  cmd->footer(footer);
  cmd->callback([a, what, join] {
    const data::Dataset d = data::load_dataset(a->data);
    const auto val = d.subset(a->split);
    if (val.empty()) throw std::runtime_error(a->data + ": no samples in split '" + a->split + "'");
    const auto s = join(a->models, val, a->threshold, a->out);
    for (const auto& why : s.unreadable) spdlog::warn("skipped: {}", why);
    std::string by_source;
    for (const auto& [source, auc] : s.val_roc_auc_by_source) by_source += fmt::format(", {} {:.4f}", source, auc);
    std::cout << fmt::format("{}: {} {} models; {} ROC-AUC {:.4f}{} on {} images; threshold {:.4f} ({})\n", a->out,
                             what, s.models, a->split, s.val_roc_auc, by_source, s.val_images, s.threshold,
                             s.threshold_rule);
  });
}

}  // namespace

void add_average_command(CLI::App& app) {
  add_join_command(
      app, "average", "Average the weights of models fine-tuned from the same start into one (a model soup)",
      "the average of",
      "Writes one network of the same size whose every weight is the mean of the models' (no cost\n"
      "at inference, unlike `fracture ensemble`), with its threshold chosen on --data's validation\n"
      "split in fp32. The models should share their ImageNet start and frozen stages, as runs of\n"
      "`fracture train` with one --model, --size and --freeze do. docs/results.md measures it.\n"
      "An int8 calibration is not carried over: run `fracture calibrate` on the result.\n\n"
      "Example:\n"
      "  fracture average runs/atlas-42/best.safetensors runs/both-42/best.safetensors \\\n"
      "      --data runs/split-both.csv -o runs/average-42/best.safetensors",
      exporter::average_models);
}

void add_ensemble_command(CLI::App& app) {
  add_join_command(
      app, "ensemble", "Join models of one architecture into an ensemble: one file, every network run, log-odds averaged",
      "an ensemble of",
      "Writes one model file holding every model's network; predict, evaluate, serve and the heat\n"
      "maps run them all on each image and average their log-odds (so it costs one network's time\n"
      "per member). The threshold is chosen on --data's validation split in fp32. The models must\n"
      "agree in architecture, classes, preprocessing and pooling. An ensemble runs in fp32 or bf16\n"
      "(no int8 calibration) and is not exported to ONNX. docs/results.md measures it.\n\n"
      "Example:\n"
      "  fracture ensemble runs/atlas-42/best.safetensors runs/both-42/best.safetensors \\\n"
      "      --data runs/split-both.csv -o runs/ensemble-42/best.safetensors",
      exporter::ensemble_models);
}

}  // namespace fracture::cli
