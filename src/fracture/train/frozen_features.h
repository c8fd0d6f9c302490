#pragma once
// The frozen stages' output, computed once: their weights do not change
// during training, so an epoch costs only the trainable part. That is what
// makes transfer learning take minutes on a 2-core CPU.
#include <torch/torch.h>

#include <atomic>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/data/transforms.h"
#include "fracture/models/classifier.h"
#include "fracture/train/options.h"

namespace fracture::train {

// Output of the frozen stages for a list of samples.
struct CachedFeatures {
  torch::Tensor x;       // [n, ...] float32, CPU
  torch::Tensor y;       // [n] int64
  bool pooled = false;   // x is [n, C]: all stages frozen, only the head trains
  std::vector<size_t> index;  // row -> sample (unreadable images have no row)
};

// Stages [0, first_trainable) on every sample. view 0 is the plain image;
// views > 0 are seeded random augmentations, as `augment` says. Throws Interrupted when `stop`
// (trainer.h) is set, std::runtime_error when no image is readable.
CachedFeatures extract_features(models::ClassifierImpl& net, int first_trainable,
                                const std::vector<data::Sample>& samples, const data::PreprocessOptions& pre,
                                int workers, torch::Device device, const std::string& what,
                                const std::atomic<bool>* stop, int view = 0, uint64_t seed = 0,
                                const data::AugmentOptions& augment = {});

// What cached frozen features depend on: the network and its weights, the
// preprocessing, the views, the seed, and the very images and labels of both
// splits. A change in any of them must not reuse a stale cache.
std::string feature_cache_key(const TrainOptions& o, const data::PreprocessOptions& pre,
                              const std::vector<data::Sample>& train_set, const std::vector<data::Sample>& val_set);

struct FeatureSets {
  CachedFeatures train, val;  // train.x holds every view, view-major: [views * n, ...]
};

// The training views and the validation features: from the run folder's
// disk cache when it holds this key's (--cache disk), else computed (and
// saved there with --cache disk).
FeatureSets cache_features(models::ClassifierImpl& net, int first_trainable, const TrainOptions& o,
                           const data::PreprocessOptions& pre, const std::vector<data::Sample>& train_set,
                           const std::vector<data::Sample>& val_set, torch::Device device,
                           const std::atomic<bool>* stop);

}  // namespace fracture::train
