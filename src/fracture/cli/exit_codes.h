#pragma once
// The process's exit status, shared by the subcommands (see main.cpp).
#include <spdlog/common.h>

namespace fracture::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitSomeInputsFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitFatal = 2;
inline constexpr int kExitInterrupted = 130;

// A command that finished but could not use some inputs says so here.
void note_failed_inputs();
int exit_status();

// The console's level (-v / -q), for commands that add a log file beside it.
void set_console_log_level(spdlog::level::level_enum level);
spdlog::level::level_enum console_log_level();

}  // namespace fracture::cli
