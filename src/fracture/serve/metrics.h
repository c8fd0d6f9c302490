#pragma once
// The server's counters, in Prometheus's text format (GET /metrics): requests
// by route and status, request latency and batch size as histograms, images
// scored, and the queue depth at the moment of the scrape.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fracture::serve {

// Cumulative-bucket histogram, as Prometheus reads one.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // Lines `<name>_bucket{le=...} n`, `<name>_sum`, `<name>_count`.
  std::string text(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void request(const std::string& route, int status, double seconds);
  void batch(size_t images);
  // The exposition; `queue_depth`: images waiting for a forward pass now.
  std::string prometheus(size_t queue_depth) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  Histogram latency_, batch_size_;
  uint64_t images_ = 0;
};

}  // namespace fracture::serve
