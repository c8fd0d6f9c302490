#pragma once
// Config files for subcommands: TOML `key = value` lines whose keys are the
// subcommand's long flag names. CLI11 2.1's own config support does not
// reach subcommand options, so this small layer does: values from the file
// are inserted as flags, and flags given on the command line win.
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace fracture::cli {

// Rewrites args (without the program name) so that "--config FILE" becomes
// the file's options. Throws naming the file and line on unknown keys.
std::vector<std::string> expand_config(CLI::App& app, const std::vector<std::string>& args);

// Every option of `cmd` with its current value, as TOML (the run's config.toml).
std::string options_to_toml(const CLI::App& cmd);

}  // namespace fracture::cli
