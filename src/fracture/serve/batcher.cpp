#include "fracture/serve/batcher.h"

namespace fracture::serve {

Batcher::Batcher(ScoreFn score, BatcherOptions options, BatchFn on_batch)
    : score_(std::move(score)), options_(options), on_batch_(std::move(on_batch)) {
  if (options_.max_batch < 1) throw std::invalid_argument("max batch must be at least 1");
  if (options_.queue < options_.max_batch) options_.queue = options_.max_batch;
  thread_ = std::thread([this] { run(); });
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

std::optional<std::vector<std::future<Prediction>>> Batcher::submit(std::vector<PreparedImage> images,
                                                                    Clock::time_point deadline) {
  std::vector<std::future<Prediction>> futures;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() + images.size() > options_.queue) return std::nullopt;
    for (auto& image : images) {
      queue_.push_back({std::move(image), deadline, {}});
      futures.push_back(queue_.back().result.get_future());
    }
  }
  wake_.notify_one();
  return futures;
}

size_t Batcher::depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

// Waits for a first image, then up to `wait` for the batch to fill; items
// past their deadline are answered at once and not scored. An empty batch
// means the batcher is stopping with nothing left.
std::vector<Batcher::Item> Batcher::next_batch() {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  if (queue_.empty()) return {};
  const auto fill_by = Clock::now() + options_.wait;
  wake_.wait_until(lock, fill_by, [&] { return stopping_ || queue_.size() >= options_.max_batch; });
  std::vector<Item> batch;
  const auto now = Clock::now();
  while (!queue_.empty() && batch.size() < options_.max_batch) {
    Item item = std::move(queue_.front());
    queue_.pop_front();
    if (item.deadline < now)
      item.result.set_exception(std::make_exception_ptr(
          DeadlineExceeded(item.image.name + ": waited past the request's deadline; not scored")));
    else
      batch.push_back(std::move(item));
  }
  return batch;
}

void Batcher::run() {
  for (;;) {
    auto batch = next_batch();
    if (batch.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && queue_.empty()) return;
      continue;  // every item had expired
    }
    std::vector<PreparedImage> images;
    for (auto& item : batch) images.push_back(std::move(item.image));
    std::vector<Prediction> predictions;
    try {
      predictions = score_(images);
      if (predictions.size() != batch.size()) throw std::logic_error("the scorer returned a wrong number of predictions");
    } catch (...) {
      for (auto& item : batch) item.result.set_exception(std::current_exception());
      continue;
    }
    if (on_batch_) on_batch_(batch.size());  // counted before anyone is answered: a client then sees it
    for (size_t k = 0; k < batch.size(); ++k) batch[k].result.set_value(std::move(predictions[k]));
  }
}

}  // namespace fracture::serve
