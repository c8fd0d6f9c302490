#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/data/dataset.h"
#include "fracture/export/int8_calibration.h"
#include "fracture/util/paths.h"

namespace fracture::cli {

void add_calibrate_command(CLI::App& app) {
  struct Args {
    std::string model, data, split = "train", check = "val", out;
    exporter::CalibrationOptions opt;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("calibrate", "Measure a model's activation ranges for --precision int8, and check it");
  cmd->add_option("-m,--model", a->model, "Model file (default: the built-in FracAtlas model)");
  cmd->add_option("--data", a->data, "Split manifest (the run's split.csv), or a data set folder")->required();
  cmd->add_option("--split", a->split, "Which split's images to measure on")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "val", "test", "all"}));
  cmd->add_option("--images", a->opt.max_images, "Images to measure on, spread evenly over the split")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--percentile", a->opt.percentile,
                  "Each activation's range: this percentile of its magnitudes (100: the largest)")
      ->capture_default_str()
      ->check(CLI::Range(50.001, 100.0));
  cmd->add_option("--check", a->check,
                  "Split of --data scored in fp32 and int8 for the accuracy check (none: skip; then "
                  "--precision auto keeps fp32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"val", "test", "train", "none"}));
  cmd->add_option("-o,--out", a->out, "The calibrated copy of the model to write (.safetensors)")->required();
  cmd->footer(
      "Writes a copy of the model whose description holds the range of each activation on the\n"
      "images, and the check: validation ROC-AUC in int8 within 0.002 of fp32. `--precision auto`\n"
      "(the default of predict, evaluate and serve) runs a model in int8 only where its check\n"
      "passed and the CPU has VNNI. See docs/benchmarks.md. Research use only.\n\n"
      "Example:\n  fracture calibrate --data runs/split.csv -o fracatlas-int8.safetensors");
  cmd->callback([a] {
    const auto model = util::resolve_model(a->model);
    const data::Dataset d = data::load_dataset(a->data);
    const auto pick = [&](const std::string& split) { return split == "all" ? d.samples : d.subset(split); };
    const auto samples = pick(a->split);
    if (samples.empty()) throw std::runtime_error(a->data + ": no samples in split '" + a->split + "'");
    const auto check = a->check == "none" ? std::vector<data::Sample>{} : pick(a->check);
    if (a->check != "none" && check.empty())
      throw std::runtime_error(a->data + ": no samples in split '" + a->check + "' for the check");
    a->opt.data = fmt::format("{}'s {} split", a->data, a->split);
    const auto s = exporter::calibrate_int8_file(model, samples, a->opt, a->out, check, a->check);
    for (const auto& why : s.unreadable) spdlog::warn("skipped: {}", why);
    std::cout << fmt::format("{}: int8 ranges of {} activations from {} {} images ({} unreadable), from {}\n", a->out,
                             s.activations, s.images, a->split, s.unreadable.size(),
                             std::filesystem::path(model).filename().string());
    if (!s.check) {
      std::cout << fmt::format("int8 check: not run ({}); --precision auto keeps fp32\n", s.no_check_reason);
      return;
    }
    const auto& c = *s.check;
    std::string by_source;  // "; fracatlas 0.9389 -> 0.9431 (+0.0042)"
    for (const auto& [source, auc] : c.roc_auc_by_source)
      by_source += fmt::format("; {} {:.4f} -> {:.4f} ({:+.4f})", source, auc.first, auc.second, auc.second - auc.first);
    std::cout << fmt::format("int8 check on {} {} images: ROC-AUC fp32 {:.4f}, int8 {:.4f} ({:+.4f}; allowed {}{}){}, "
                             "{} labels changed: {}\n",
                             c.images, c.split, c.roc_auc_fp32, c.roc_auc_int8, c.roc_auc_int8 - c.roc_auc_fp32,
                             exporter::kInt8AucTolerance, by_source.empty() ? "" : ", each source too", by_source,
                             c.labels_changed,
                             c.passed ? "passed, --precision auto runs it in int8 on CPUs with VNNI"
                                      : "FAILED, --precision auto keeps fp32");
  });
}

}  // namespace fracture::cli
