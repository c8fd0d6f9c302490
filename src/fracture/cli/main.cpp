// fracture: bone-fracture classification of radiographs by transfer learning.
// Research use only; not a medical device.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>

#include "fracture/cli/commands.h"
#include "fracture/cli/config_file.h"
#include "fracture/util/runtime.h"

int main(int argc, char** argv) {
  fracture::util::configure_runtime();
  CLI::App app{
      "fracture " FRACTURE_VERSION
      " - bone-fracture classification of radiographs by transfer learning\n"
      "from ImageNet-pretrained EfficientNets (after arXiv 2406.15958).\n"
      "Research use only: not a medical device.",
      "fracture"};
  app.require_subcommand(1);
  app.set_version_flag("--version", FRACTURE_VERSION);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Log debug details");
  app.add_flag("-q,--quiet", quiet, "Log warnings and errors only");
  app.footer("Run `fracture <command> --help` for a command's options and examples.");
  fracture::cli::add_split_command(app);
  fracture::cli::add_train_command(app);
  fracture::cli::add_evaluate_command(app);
  fracture::cli::add_predict_command(app);
  fracture::cli::add_models_command(app);
  fracture::cli::add_weights_command(app);
  fracture::cli::add_imagenet_command(app);
  app.parse_complete_callback([&] {
    spdlog::set_level(verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info);
  });
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    args = fracture::cli::expand_config(app, args);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
