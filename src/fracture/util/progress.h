#pragma once
// Progress of long work: a live bar with rate and ETA on a terminal, plain
// log lines (every 10% or 30 s) when output goes to a file or CI log.
#include <chrono>
#include <cstdint>
#include <string>

namespace fracture::util {

class Progress {
 public:
  // `unit` names what is counted ("img"); `total` may be 0 when unknown.
  Progress(std::string label, int64_t total, std::string unit = "img");
  ~Progress();
  // Adds `n` done items; `status` is shown after the rate (e.g. "loss 0.41").
  void advance(int64_t n, const std::string& status = "");
  void finish(const std::string& status = "");
  double elapsed_seconds() const;
  double rate() const;  // items per second so far

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool tty_, finished_ = false;
};

std::string format_duration(double seconds);

}  // namespace fracture::util
