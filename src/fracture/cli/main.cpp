// fracture: bone-fracture classification of radiographs by transfer learning.
// Research use only; not a medical device.
//
// Streams: standard output carries results only (predictions, metrics,
// tables); every log line, warning and progress bar goes to standard error.
// Exit status: 0 success; 1 some inputs could not be used (the rest were);
// 2 usage error or a fatal error; 130 interrupted.
#include <c10/util/Exception.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>

#include "fracture/cli/commands.h"
#include "fracture/cli/config_file.h"
#include "fracture/cli/exit_codes.h"
#include "fracture/util/runtime.h"

namespace {

// One logger for the whole program, on stderr. The logger passes everything
// from debug up; each sink has its own level, so that a run's train.log keeps
// info lines under --quiet.
void log_to_stderr() {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("fracture", console);
  logger->set_level(spdlog::level::debug);
  logger->flush_on(spdlog::level::debug);  // a killed run loses no line
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  console->set_level(spdlog::level::info);
}

}  // namespace

int main(int argc, char** argv) {
  fracture::util::configure_runtime();
  log_to_stderr();
  CLI::App app{
      "fracture " FRACTURE_VERSION
      " - bone-fracture classification of radiographs by transfer learning\n"
      "from ImageNet-pretrained EfficientNets (after arXiv 2406.15958).\n"
      "Research use only: not a medical device.",
      "fracture"};
  app.require_subcommand(1);
  app.set_version_flag("--version", FRACTURE_VERSION);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Log debug details (on standard error)");
  app.add_flag("-q,--quiet", quiet, "Log warnings and errors only (on standard error)");
  app.footer(
      "Standard output carries results only; logs, warnings and progress go to standard error.\n"
      "Exit status: 0 done; 1 some inputs could not be used (each named on stderr, the rest done);\n"
      "2 usage or fatal error; 130 interrupted.\n"
      "Run `fracture <command> --help` for a command's options and examples.");
  fracture::cli::add_split_command(app);
  fracture::cli::add_train_command(app);
  fracture::cli::add_evaluate_command(app);
  fracture::cli::add_predict_command(app);
  fracture::cli::add_serve_command(app);
  fracture::cli::add_export_command(app);
  fracture::cli::add_calibrate_command(app);
  fracture::cli::add_average_command(app);
  fracture::cli::add_ensemble_command(app);
  fracture::cli::add_models_command(app);
  fracture::cli::add_weights_command(app);
  fracture::cli::add_imagenet_command(app);
  fracture::cli::require_finite_numbers(app);
  app.parse_complete_callback([&] {
    const auto level = verbose ? spdlog::level::debug : quiet ? spdlog::level::warn : spdlog::level::info;
    spdlog::default_logger()->sinks().front()->set_level(level);
    fracture::cli::set_console_log_level(level);
  });
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    args = fracture::cli::expand_config(app, args);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last-first
    app.parse(args);
  } catch (const CLI::RuntimeError& e) {  // a command's own non-zero status (1, 130)
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the usage error
    return code == 0 ? 0 : fracture::cli::kExitUsage;
  } catch (const c10::Error& e) {  // LibTorch's own: the message without its C++ backtrace
    spdlog::error("{}", e.what_without_backtrace());
    return fracture::cli::kExitFatal;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return fracture::cli::kExitFatal;
  }
  return fracture::cli::exit_status();
}
