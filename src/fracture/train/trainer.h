#pragma once
// Fine-tuning a registered model from its ImageNet weights with a new head.
//
// Freezing: "head" trains only the final linear layer, "last:K" the last K
// stages and the head, "full" everything. The frozen part's output does not
// change during training, so it is computed once and cached (RAM, or disk
// in the run folder for --resume): an epoch then costs only the trainable
// part. That is what makes transfer learning take minutes on a 2-core CPU.
#include <nlohmann/json.hpp>

#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/data/transforms.h"

namespace fracture::train {

struct TrainOptions {
  std::string model = "efficientnet_lite0";
  std::string weights;        // backbone weights file instead of the registry's ImageNet weights
  bool from_scratch = false;  // explicit: random initialisation
  std::string freeze = "last:3";  // measured on FracAtlas val: head 0.869, last:3 0.903 ROC-AUC
  // 384 px: the best validation ROC-AUC within the 30-minute budget on a
  // 2-core CPU (docs/results.md; 224: 0.904, 320: 0.913, 384: 0.920).
  int image_size = 384;  // 0: the model's native resolution
  data::ResizeMode resize = data::ResizeMode::Stretch;
  bool clahe = false;
  int epochs = 12;
  int batch_size = 16;
  std::string optimizer = "adamw";  // adamw, adam, sgd
  double lr = 1e-3;
  double weight_decay = 1e-4;
  double momentum = 0.9;  // sgd
  double warmup_epochs = 1.0;
  std::string schedule = "cosine";  // cosine or constant (after warm-up)
  double label_smoothing = 0.0;
  // mixup's Beta(alpha, alpha); 0: off. 0.4 took FracAtlas val ROC-AUC from
  // 0.920 / 0.925 to 0.935 at 384 px, at no extra cost (docs/results.md).
  double mixup = 0.4;
  std::string balance = "loss";  // loss (class-weighted), sampler (balanced batches), none
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
  std::string cache = "ram";  // frozen-feature cache: ram, disk, off
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

// Refuses (std::runtime_error) to train into a folder that already holds a
// run, unless options.resume or options.overwrite; with overwrite, removes
// that run's files first. Called before anything is written there.
void prepare_run_folder(const TrainOptions& options);

// The options that decide the model (everything but where and how fast it
// runs), as JSON: recorded in each model file and in the resumable state;
// --resume refuses a run whose recipe differs.
nlohmann::json recipe_json(const TrainOptions& options);

// Thrown when `stop` is seen outside the epoch loop (while caching features).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

struct EpochRecord {
  int epoch = 0;
  // val_auc: the selection score (train/validation.h: with several sources,
  // the mean of their ROC-AUCs, each in val_auc_by_source; val_auc_pooled
  // scores every row together).
  double train_loss = 0, val_loss = 0, val_auc = 0, val_ap = 0, lr = 0, seconds = 0, images_per_second = 0;
  double val_auc_pooled = 0;
  std::map<std::string, double> val_auc_by_source;
};

struct TrainResult {
  // The model to use (best.safetensors): the average of the last epochs when
  // averaging (once training has finished), else the best epoch.
  std::string model, last_model;
  std::string best_epoch_model;  // best.safetensors, or best-epoch.safetensors when averaging
  std::string averaged;          // "average of epochs 7-12", or empty
  double model_val_auc = 0;      // of `model`
  double threshold = 0.5;        // of `model`; two-class models only
  int classes = 2;               // more: the label is the most probable class, there is no threshold
  int best_epoch = -1;           // the single epoch with the best validation ROC-AUC
  double cell_pooling = 0;       // as trained (0 where the option could not apply)
  int64_t boxed_images = 0;      // fractured training images whose boxes supervised the cells
  double best_val_auc = 0;
  bool interrupted = false;
  bool early_stopped = false;
  std::vector<EpochRecord> history;
  double seconds = 0;
};

// Trains on dataset.subset("train"), selects on "val". `stop` (e.g. set by
// Ctrl-C) ends training after the current batch; the last completed epoch
// stays resumable with options.resume.
TrainResult train(const data::Dataset& dataset, const TrainOptions& options, const std::atomic<bool>* stop = nullptr);

// "head" / "last:K" / "full" -> index of the first trainable stage.
int first_trainable_stage(const std::string& freeze, int num_stages);

}  // namespace fracture::train
