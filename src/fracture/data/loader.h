#pragma once
// Batches of network input from a list of samples: worker threads decode,
// preprocess and augment ahead of the consumer, into a bounded queue of
// batches delivered in order (so a seeded run is reproducible whatever the
// thread timing). An optional in-RAM cache keeps decoded, resized images so
// that epochs after the first skip decoding.
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/data/transforms.h"

namespace fracture::data {

struct LoaderOptions {
  int batch_size = 16;
  bool shuffle = false;
  bool drop_last = false;
  int workers = 2;
  int prefetch_batches = 4;  // bound on decoded batches waiting for the consumer
  uint64_t seed = 0;
  bool cache = false;  // keep preprocessed 8-bit images in RAM
  bool color = false;  // radiographs are grey; photographs need RGB
  int64_t max_pixels = kDefaultMaxPixels;  // larger images are refused from their header
  // A JPEG without its end marker is decoded as far as it goes, the rest
  // filled in: right for a data set's known quirks (training, evaluation,
  // FracAtlas's 62 such files), wrong for an image someone wants scored,
  // which then gets an error naming it instead (predict, the server).
  bool refuse_truncated = false;
  PreprocessOptions preprocess;
  AugmentOptions augment;
  // Optional sampling weights per sample (e.g. a class-balanced sampler):
  // each epoch then draws samples.size() indices with replacement.
  std::vector<double> sample_weights;
  // Data-parallel training: of each batch (the same on every rank), only the
  // samples with index % shard_count == shard_rank; a rank's part of a batch
  // may be empty.
  int shard_rank = 0, shard_count = 1;
};

// How the loader decodes a file for these options (at reduced scale where the
// input size allows): anything scoring images outside a loader decodes so too.
DecodeOptions decode_options_for(const LoaderOptions& options);

struct Batch {
  torch::Tensor images;          // [n, 3, size, size] float; undefined when n = 0
  torch::Tensor labels;          // [n] int64
  std::vector<size_t> indices;   // into the loader's sample list
  // Samples of this batch that could not be read, with the message naming
  // the file and the problem (they are not in `images`).
  std::vector<std::pair<size_t, std::string>> failures;
  bool empty() const { return indices.empty(); }
};

struct LoaderStats {
  size_t decoded = 0, cache_hits = 0, truncated = 0, failed = 0;
  std::vector<std::string> failures;  // one message per unreadable file, each naming it
};

class DataLoader {
 public:
  DataLoader(std::vector<Sample> samples, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts producing the batches of `epoch` (its shuffle order depends on seed and epoch).
  void start_epoch(int epoch);
  // The next batch in order, or nullopt at the end of the epoch. Unreadable
  // files are left out of their batch's images and listed in its failures
  // (and once in stats()); a batch may hold failures only (empty()).
  std::optional<Batch> next();
  size_t num_batches() const { return batches_.size(); }
  // Batches every epoch will have, before start_epoch.
  size_t batches_per_epoch() const;
  size_t size() const { return samples_.size(); }
  const std::vector<Sample>& samples() const { return samples_; }
  LoaderStats stats() const;

  // One sample through the same pipeline (for prediction and tests).
  torch::Tensor load_one(size_t index, int epoch = 0);

 private:
  std::optional<cv::Mat> load_sample(size_t index, int epoch);  // preprocessed + augmented
  void worker_loop(uint64_t generation);
  void stop_workers();

  std::vector<Sample> samples_;
  LoaderOptions opt_;
  std::vector<std::vector<size_t>> batches_;

  mutable std::mutex mu_;
  std::condition_variable produced_, consumed_;
  std::map<size_t, Batch> ready_;
  size_t next_to_build_ = 0, next_to_deliver_ = 0;
  int epoch_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  std::mutex cache_mu_;
  std::vector<std::shared_ptr<const cv::Mat>> cache_;
  std::vector<char> failed_;  // per sample: already reported unreadable
  std::vector<std::string> failure_message_;  // per sample, when failed
  LoaderStats stats_;
};

}  // namespace fracture::data
