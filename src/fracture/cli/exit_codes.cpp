#include "fracture/cli/exit_codes.h"

#include <atomic>

namespace fracture::cli {
namespace {
std::atomic<bool> g_failed_inputs{false};
std::atomic<int> g_console_level{spdlog::level::info};
}  // namespace

void note_failed_inputs() { g_failed_inputs = true; }
int exit_status() { return g_failed_inputs ? kExitSomeInputsFailed : kExitOk; }

void set_console_log_level(spdlog::level::level_enum level) { g_console_level = level; }
spdlog::level::level_enum console_log_level() {
  return static_cast<spdlog::level::level_enum>(g_console_level.load());
}

}  // namespace fracture::cli
