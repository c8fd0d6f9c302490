#include "fracture/util/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

namespace fracture::util {
namespace {

// The level of the first sink of the default logger: the console (stderr) in
// the program, whatever the log files beside it take.
spdlog::level::level_enum console_level() {
  const auto& sinks = spdlog::default_logger()->sinks();
  return sinks.empty() ? spdlog::get_level() : std::max(spdlog::get_level(), sinks.front()->level());
}

}  // namespace

std::string format_duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), start_(std::chrono::steady_clock::now()),
      last_draw_(start_), tty_(::isatty(STDERR_FILENO) && console_level() <= spdlog::level::info) {}

Progress::~Progress() {
  if (!finished_) finish();
}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

double Progress::rate() const {
  const double e = elapsed_seconds();
  return e > 0 ? static_cast<double>(done_) / e : 0.0;
}

void Progress::advance(int64_t n, const std::string& status) {
  done_ += n;
  status_ = status;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_) {
    if (since >= 0.1) draw(false), last_draw_ = now;
  } else if (since >= 15) {  // logs: a line every 15 s of long work, nothing for short work
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  if (tty_ || elapsed_seconds() >= 15) draw(true);
}

void Progress::draw(bool final) {
  const double r = rate();
  const std::string eta = (total_ > 0 && r > 0 && !final) ? " ETA " + format_duration((total_ - done_) / r) : "";
  const std::string time = final ? " in " + format_duration(elapsed_seconds()) : "";
  const std::string count = total_ > 0 ? fmt::format("{}/{}", done_, total_) : fmt::format("{}", done_);
  const std::string tail = fmt::format("{} {} {:.1f} {}/s{}{}{}", count, unit_, r, unit_, eta, time,
                                       status_.empty() ? "" : "  " + status_);
  if (tty_) {
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min<int64_t>(done_, total_) / total_) : 0;
    std::fprintf(stderr, "\r%s [%s%s] %s\033[K%s", label_.c_str(), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), tail.c_str(), final ? "\n" : "");
    std::fflush(stderr);
  } else {  // not a terminal: progress lines only when asked for (-v)
    spdlog::debug("{} {}", label_, tail);
  }
}

}  // namespace fracture::util
