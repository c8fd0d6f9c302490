#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/models/registry.h"

namespace fracture::cli {

void add_models_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("models", "List the models this build knows, their input size and ImageNet weights");
  cmd->footer("Example:\n  fracture models");
  cmd->callback([] {
    std::cout << fmt::format("{:<18} {:>5} {:>10}  {:<10} {}\n", "name", "size", "params", "imagenet", "description");
    for (const auto& spec : models::model_registry()) {
      auto model = spec.build(1000);
      int64_t params = 0;
      for (const auto& p : model->parameters()) params += p.numel();
      std::string weights = "-";
      if (spec.imagenet)
        weights = std::filesystem::exists(models::imagenet_weights_path(spec)) ? "cached" : "missing";
      std::cout << fmt::format("{:<18} {:>5} {:>9.1f}M  {:<10} {}\n", spec.name, spec.input_size, params / 1e6, weights,
                               spec.description);
    }
  });
}

}  // namespace fracture::cli
