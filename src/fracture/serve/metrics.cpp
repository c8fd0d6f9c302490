#include "fracture/serve/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace fracture::serve {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<size_t>(bucket)];
  sum_ += value;
  ++count_;
}

std::string Histogram::text(const std::string& name) const {
  std::string out;
  uint64_t cumulative = 0;
  for (size_t b = 0; b < bounds_.size(); ++b) {
    cumulative += counts_[b];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[b], cumulative);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
  return out;
}

Metrics::Metrics()
    : latency_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128}) {}

void Metrics::request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
  latency_.observe(seconds);
}

void Metrics::batch(size_t images) {
  std::lock_guard<std::mutex> lock(mu_);
  batch_size_.observe(static_cast<double>(images));
  images_ += images;
}

std::string Metrics::prometheus(size_t queue_depth) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out =
      "# HELP fracture_requests_total HTTP requests answered, by route and status.\n"
      "# TYPE fracture_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("fracture_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  out +=
      "# HELP fracture_request_seconds Time from a request's arrival to its answer.\n"
      "# TYPE fracture_request_seconds histogram\n" +
      latency_.text("fracture_request_seconds") +
      "# HELP fracture_batch_size Images per forward pass.\n"
      "# TYPE fracture_batch_size histogram\n" +
      batch_size_.text("fracture_batch_size") +
      "# HELP fracture_images_scored_total Images scored by the network.\n"
      "# TYPE fracture_images_scored_total counter\n" +
      fmt::format("fracture_images_scored_total {}\n", images_) +
      "# HELP fracture_queue_depth Images waiting for a forward pass.\n"
      "# TYPE fracture_queue_depth gauge\n" +
      fmt::format("fracture_queue_depth {}\n", queue_depth);
  return out;
}

}  // namespace fracture::serve
