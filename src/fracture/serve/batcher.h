#pragma once
// Dynamic batching: images from concurrent requests wait in one bounded
// queue, and a single thread scores them together, up to `max_batch` images
// at a time, waiting at most `wait` after the first one for others to join.
// On a CPU a batch of 8 costs less than 8 single passes, and one thread at
// the network keeps the latency of each pass predictable.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "fracture/predictor.h"

namespace fracture::serve {

struct BatcherOptions {
  size_t max_batch = 8;
  std::chrono::milliseconds wait{5};
  size_t queue = 64;  // images waiting; more are refused (the server answers 503)
};

// An image that waited past its request's deadline: it is not scored.
class DeadlineExceeded : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Batcher {
 public:
  using Clock = std::chrono::steady_clock;
  // Scores one batch; called on the batcher's own thread only.
  using ScoreFn = std::function<std::vector<Prediction>(const std::vector<PreparedImage>&)>;
  // Told of each batch's size after it is scored.
  using BatchFn = std::function<void(size_t)>;

  Batcher(ScoreFn score, BatcherOptions options, BatchFn on_batch = {});
  // Scores what is queued, then stops.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues a request's images together, or none of them (nullopt) when the
  // queue has no room for all. Each future holds the prediction, or throws
  // DeadlineExceeded, or what scoring threw.
  std::optional<std::vector<std::future<Prediction>>> submit(std::vector<PreparedImage> images,
                                                             Clock::time_point deadline);
  size_t depth() const;

 private:
  struct Item {
    PreparedImage image;
    Clock::time_point deadline;
    std::promise<Prediction> result;
  };
  void run();
  std::vector<Item> next_batch();

  ScoreFn score_;
  BatcherOptions options_;
  BatchFn on_batch_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fracture::serve
