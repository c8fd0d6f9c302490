#pragma once
// Each subcommand lives in its own file and registers itself on the app;
// it only parses flags and calls the library.
#include <CLI/CLI.hpp>

namespace fracture::cli {

void add_models_command(CLI::App& app);
void add_split_command(CLI::App& app);
void add_imagenet_command(CLI::App& app);
void add_weights_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_evaluate_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_serve_command(CLI::App& app);
// Every number option of `app` and its subcommands refuses nan and inf: a
// range check passes NaN (every comparison with it is false), and a NaN
// limit then refuses every image, or none.
void require_finite_numbers(CLI::App& app);
void add_export_command(CLI::App& app);
void add_calibrate_command(CLI::App& app);
void add_average_command(CLI::App& app);
void add_ensemble_command(CLI::App& app);

}  // namespace fracture::cli
