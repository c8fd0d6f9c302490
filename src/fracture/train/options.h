#pragma once
// What a training run is asked to do: typed options, checked once, before any
// work (validate_options), and the recipe they amount to (recipe_json).
//
// Freezing: "head" trains only the final linear layer, "last:K" the last K
// stages and the head, "full" everything.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "fracture/data/transforms.h"

namespace fracture::train {

enum class Optimizer { AdamW, Adam, Sgd };
enum class Schedule { Cosine, Constant };      // after the linear warm-up
enum class Balance { Loss, Sampler, None };    // class-weighted loss, balanced sampling, or neither
enum class FeatureCache { Ram, Disk, Off };    // where the frozen stages' output is kept
// What augmentation changes: position (crop, turn, mirror), the scanner's
// intensities (gamma, window, noise, blur: data::with_scanner_intensity), or both.
// Intensity-only keeps boxes valid, so cached views keep box supervision.
enum class AugmentKind { Geometric, Intensity, Both };

// Which stages train: the head only, the last K stages and the head, or all.
struct Freeze {
  enum class Kind { Head, Last, Full };
  Kind kind = Kind::Last;
  int last = 3;  // K, for Kind::Last

  // "head", "last:K" or "full"; throws std::invalid_argument naming --freeze.
  static Freeze parse(const std::string& text);
  std::string str() const;
  // The index of the first trainable stage of a network with num_stages
  // stages; throws std::invalid_argument when K is more than it has.
  int first_trainable(int num_stages) const;
};

// Each throws std::invalid_argument naming the flag and the values it takes.
Optimizer parse_optimizer(const std::string& text);
Schedule parse_schedule(const std::string& text);
Balance parse_balance(const std::string& text);
FeatureCache parse_feature_cache(const std::string& text);
AugmentKind parse_augment_kind(const std::string& text);
const char* to_string(Optimizer v);
const char* to_string(Schedule v);
const char* to_string(Balance v);
const char* to_string(FeatureCache v);
const char* to_string(AugmentKind v);

struct TrainOptions {
  std::string model = "efficientnet_lite0";
  std::string weights;        // backbone weights file instead of the registry's ImageNet weights
  bool from_scratch = false;  // explicit: random initialisation
  Freeze freeze;              // last:3, measured on FracAtlas val: head 0.869, last:3 0.903 ROC-AUC
  // 384 px: the best validation ROC-AUC within the 30-minute budget on a
  // 2-core CPU (docs/results.md; 224: 0.904, 320: 0.913, 384: 0.920).
  int image_size = 384;  // 0: the model's native resolution
  data::ResizeMode resize = data::ResizeMode::Stretch;
  bool clahe = false;
  bool standardise = false;  // per-image standardisation (data::PreprocessOptions)
  int epochs = 12;
  int batch_size = 16;
  Optimizer optimizer = Optimizer::AdamW;
  double lr = 1e-3;
  double weight_decay = 1e-4;
  double momentum = 0.9;  // sgd
  double warmup_epochs = 1.0;
  Schedule schedule = Schedule::Cosine;
  double label_smoothing = 0.0;
  // mixup's Beta(alpha, alpha); 0: off. 0.4 took FracAtlas val ROC-AUC from
  // 0.920 / 0.925 to 0.935 at 384 px, at no extra cost (docs/results.md).
  double mixup = 0.4;
  Balance balance = Balance::Loss;
  // Per-source sampling weights, "SOURCE=W,..." (train/validation.h); empty:
  // every image once per epoch. With weights, each epoch draws as many images
  // as the training set holds, with replacement, a source's in proportion.
  std::string source_weights;
  double ema_decay = 0.0;        // 0: off; e.g. 0.999
  // Checkpoint averaging: the run's model is the uniform mean of the weights
  // after each of the last K epochs, not its best epoch (0: off). On FracAtlas
  // val it beat every epoch it averaged but one spike, for two seeds
  // (docs/results.md).
  int average_last = 6;
  // Multiple-instance pooling: the image's log-odds is a soft maximum
  // (sharpness r) over its cells' instead of their mean
  // (models::ClassifierImpl::set_cell_pooling); 0: average pooling.
  // Box supervision: weight of a per-cell loss against the training images'
  // fracture boxes (data/boxes.h), on those same cells; 0: off. Without
  // boxes in the data, training goes on without it.
  // Together (r = 4, weight 1) they took FracAtlas val ROC-AUC from 0.931 /
  // 0.912 to 0.936 / 0.938 for seeds 42 / 7; seed 1, a later check: 0.928 -> 0.924
  // (docs/results.md).
  double cell_pooling = 4.0;
  double box_loss = 1.0;
  double clip_grad_norm = 0.0;   // 0: off
  int patience = 0;              // early stopping on validation ROC-AUC; 0: off
  bool augment = true;
  AugmentKind augment_kind = AugmentKind::Geometric;
  FeatureCache cache = FeatureCache::Ram;
  // Mirror and shift cached feature maps each epoch. Off: it did not help
  // on FracAtlas val (0.911 against 0.920 / 0.925 without; docs/results.md).
  bool feature_augment = false;
  int cache_views = 1;        // with a cache and augmentation: views cached per training image
  bool image_cache = true;    // keep decoded images in RAM when not caching features
  int workers = 2;
  int threads = 0;  // intra-op threads; 0: LibTorch's default
  uint64_t seed = 42;
  std::string threshold_rule = "youden";  // or "sensitivity:0.9"
  std::string device = "auto";
  bool resume = false;
  bool overwrite = false;     // replace a run already in out_dir (else refused)
  int stop_after_epochs = 0;  // end this invocation after N epochs (time-boxing); --resume continues
  std::string out_dir = "runs/train";
  std::string manifest_sha256;  // of the split manifest the data came from; recorded in every model file
};

// Every option's range and spelling, checked before any work; throws
// std::invalid_argument naming the flag and what it takes.
void validate_options(const TrainOptions& options);

// The options that decide the model (everything but where and how fast it
// runs), as JSON: recorded in each model file and in the resumable state;
// --resume refuses a run whose recipe differs.
nlohmann::json recipe_json(const TrainOptions& options);

// The image augmentation these options ask for (enabled when o.augment).
data::AugmentOptions augment_options(const TrainOptions& options);

// "head" / "last:K" / "full" -> index of the first trainable stage.
int first_trainable_stage(const std::string& freeze, int num_stages);

}  // namespace fracture::train
