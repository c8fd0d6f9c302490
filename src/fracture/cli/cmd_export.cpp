#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/export/onnx.h"
#include "fracture/util/paths.h"

namespace fracture::cli {

void add_export_command(CLI::App& app) {
  struct Args {
    std::string model, out;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("export", "Write a trained model as ONNX, its preprocessing in the metadata");
  cmd->add_option("-m,--model", a->model, "Model file (default: the built-in FracAtlas model)");
  cmd->add_option("-o,--out", a->out, "Output .onnx file")->required();
  cmd->footer(
      "The graph takes [batch, 3, size, size] pixels preprocessed as the metadata says and gives\n"
      "`logits` and `probabilities`; see docs/export.md. Research use only - not a medical device.\n\n"
      "Example:\n  fracture export -o fracatlas.onnx");
  cmd->callback([a] {
    const auto model = util::resolve_model(a->model);
    const auto s = exporter::export_onnx(model, a->out);
    std::cout << fmt::format("{}: ONNX opset {}, input [batch, 3, {}, {}], {} classes, {} nodes, {:.1f}M parameters, "
                             "{:.1f} MB (from {})\n",
                             a->out, s.opset, s.input_size, s.input_size, s.num_classes, s.nodes, s.parameters / 1e6,
                             s.bytes / 1e6, std::filesystem::path(model).filename().string());
  });
}

}  // namespace fracture::cli
