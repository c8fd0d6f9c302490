#include "fracture/data/loader.h"

#include <opencv2/core/utility.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "fracture/util/hash.h"

namespace fracture::data {

DataLoader::DataLoader(std::vector<Sample> samples, LoaderOptions options)
    : samples_(std::move(samples)), opt_(std::move(options)), cache_(samples_.size()), failed_(samples_.size(), 0),
      failure_message_(samples_.size()) {
  if (opt_.batch_size < 1) throw std::invalid_argument("batch size must be >= 1");
  if (!opt_.sample_weights.empty() && opt_.sample_weights.size() != samples_.size())
    throw std::invalid_argument("sample_weights must have one weight per sample");
  if (opt_.shard_count < 1 || opt_.shard_rank < 0 || opt_.shard_rank >= opt_.shard_count)
    throw std::invalid_argument("shard_rank must be from 0 to shard_count - 1");
  // The loader's threads are the parallelism; OpenCV's own pool would oversubscribe.
  cv::setNumThreads(1);
}

DataLoader::~DataLoader() { stop_workers(); }

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  consumed_.notify_all();
  produced_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  stopping_ = false;
}

size_t DataLoader::batches_per_epoch() const {
  const size_t n = samples_.size(), b = static_cast<size_t>(opt_.batch_size);
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

void DataLoader::start_epoch(int epoch) {
  stop_workers();
  std::vector<size_t> order(samples_.size());
  std::mt19937_64 rng(util::mix_seed(opt_.seed, static_cast<uint64_t>(epoch), 0x5eed));
  if (!opt_.sample_weights.empty()) {
    std::discrete_distribution<size_t> pick(opt_.sample_weights.begin(), opt_.sample_weights.end());
    for (auto& i : order) i = pick(rng);
  } else {
    std::iota(order.begin(), order.end(), 0);
    if (opt_.shuffle) std::shuffle(order.begin(), order.end(), rng);
  }
  batches_.clear();
  for (size_t b = 0; b < order.size(); b += static_cast<size_t>(opt_.batch_size)) {
    const size_t e = std::min(order.size(), b + static_cast<size_t>(opt_.batch_size));
    if (opt_.drop_last && e - b < static_cast<size_t>(opt_.batch_size)) break;
    batches_.emplace_back();
    for (size_t k = b; k < e; ++k)
      if (order[k] % static_cast<size_t>(opt_.shard_count) == static_cast<size_t>(opt_.shard_rank))
        batches_.back().push_back(order[k]);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.clear();
    next_to_build_ = next_to_deliver_ = 0;
    epoch_ = epoch;
    ++generation_;
  }
  for (int w = 0; w < std::max(1, opt_.workers); ++w)
    workers_.emplace_back(&DataLoader::worker_loop, this, generation_);
}

DecodeOptions decode_options_for(const LoaderOptions& options) {
  DecodeOptions decode;
  decode.color = options.color;
  decode.min_side = options.preprocess.size * 2;  // reduced-scale decoding, with a x2 margin for crops
  decode.max_pixels = options.max_pixels;
  return decode;
}

std::optional<cv::Mat> DataLoader::load_sample(size_t index, int epoch) {
  std::shared_ptr<const cv::Mat> base;
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (failed_[index]) return std::nullopt;
    base = cache_[index];
    if (base) ++stats_.cache_hits;
  }
  if (!base) {
    try {
      DecodedImage img = decode_image(samples_[index].path, decode_options_for(opt_));
      if (img.truncated && opt_.refuse_truncated) throw ImageError(truncated_message(samples_[index].path));
      base = std::make_shared<const cv::Mat>(preprocess(img.pixels, opt_.preprocess));
      std::lock_guard<std::mutex> lock(cache_mu_);
      ++stats_.decoded;
      if (img.truncated) {
        ++stats_.truncated;
        spdlog::debug("{}: truncated JPEG, decoded the part present", samples_[index].path);
      }
      if (opt_.cache) cache_[index] = base;
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (!failed_[index]) {
        failed_[index] = 1;
        failure_message_[index] = e.what();
        ++stats_.failed;
        stats_.failures.push_back(e.what());
        spdlog::warn("skipping unreadable image: {}", e.what());
      }
      return std::nullopt;
    }
  }
  try {
    return augment(*base, opt_.augment, util::mix_seed(opt_.seed, static_cast<uint64_t>(epoch), index));
  } catch (const std::exception& e) {  // never let a worker thread die on one image
    std::lock_guard<std::mutex> lock(cache_mu_);
    failure_message_[index] = samples_[index].path + ": augmentation failed: " + e.what();
    spdlog::warn("{}", failure_message_[index]);
    return std::nullopt;
  }
}

torch::Tensor DataLoader::load_one(size_t index, int epoch) {
  auto t = load_sample(index, epoch);
  if (!t) throw std::runtime_error(samples_.at(index).path + ": unreadable (see the warning above)");
  return to_tensor(*t, opt_.preprocess.mean, opt_.preprocess.std);
}

void DataLoader::worker_loop(uint64_t generation) {
  torch::NoGradGuard no_grad;
  while (true) {
    size_t b;
    int epoch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      consumed_.wait(lock, [&] {
        return stopping_ || generation != generation_ || next_to_build_ >= batches_.size() ||
               next_to_build_ < next_to_deliver_ + static_cast<size_t>(std::max(1, opt_.prefetch_batches));
      });
      if (stopping_ || generation != generation_ || next_to_build_ >= batches_.size()) return;
      b = next_to_build_++;
      epoch = epoch_;
    }
    Batch batch;
    std::vector<cv::Mat> images;
    std::vector<int64_t> labels;
    for (size_t i : batches_[b]) {
      auto img = load_sample(i, epoch);
      if (!img) {
        std::lock_guard<std::mutex> lock(cache_mu_);
        batch.failures.emplace_back(i, failure_message_[i]);
        continue;
      }
      images.push_back(std::move(*img));
      labels.push_back(samples_[i].label);
      batch.indices.push_back(i);
    }
    if (!images.empty()) {
      const int s = opt_.preprocess.size;
      batch.images = torch::empty({static_cast<int64_t>(images.size()), 3, s, s});
      float* dst = batch.images.data_ptr<float>();
      for (size_t k = 0; k < images.size(); ++k)
        to_chw_float(images[k], dst + k * 3 * static_cast<size_t>(s) * s, opt_.preprocess.mean, opt_.preprocess.std);
      batch.labels = torch::from_blob(labels.data(), {static_cast<int64_t>(labels.size())}, torch::kInt64).clone();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (generation != generation_) return;
      ready_.emplace(b, std::move(batch));
    }
    produced_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  while (true) {
    std::unique_lock<std::mutex> lock(mu_);
    if (next_to_deliver_ >= batches_.size()) return std::nullopt;
    produced_.wait(lock, [&] { return ready_.count(next_to_deliver_) > 0 || workers_.empty(); });
    if (workers_.empty() && !ready_.count(next_to_deliver_)) return std::nullopt;
    Batch batch = std::move(ready_.at(next_to_deliver_));
    ready_.erase(next_to_deliver_);
    ++next_to_deliver_;
    lock.unlock();
    consumed_.notify_all();
    // Nothing to deliver; but a rank's empty part of a batch still counts:
    // every rank takes part in every step.
    if (batch.indices.empty() && batch.failures.empty() && opt_.shard_count == 1) continue;
    return batch;
  }
}

LoaderStats DataLoader::stats() const {
  std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(cache_mu_));
  return stats_;
}

}  // namespace fracture::data
