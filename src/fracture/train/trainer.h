#pragma once
// Fine-tuning a registered model from its ImageNet weights with a new head
// (options.h says what can be asked). The frozen part's output does not
// change during training, so it is computed once and cached (RAM, or disk in
// the run folder for --resume): an epoch then costs only the trainable part.
//
// train() runs these phases in order (trainer.cpp, one function each):
//   plan the run (options, run folder, resumable state, splits, device)
//   -> model and freezing (and what switched itself off, and why)
//   -> data: class balance, sampling, the frozen-feature cache or loaders
//   -> box supervision targets
//   -> optimiser, EMA, and the resumed state
//   -> per epoch: train, validate and select, commit (run_folder.h)
//   -> finish: checkpoint averaging, the threshold, the result.
#include <atomic>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/train/options.h"
#include "fracture/train/run_folder.h"

namespace fracture::train {

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

class Communicator;

// Trains on dataset.subset("train"), selects on "val". `stop` (e.g. set by
// Ctrl-C) ends training after the current batch; the last completed epoch
// stays resumable with options.resume. With `comm` (distributed.h), this
// process is one rank of a data-parallel run: every rank calls train() with
// the same data and options, reads its own shard, and rank 0 alone writes
// the run's files (a --resume reads them on every rank: one file system).
TrainResult train(const data::Dataset& dataset, const TrainOptions& options, const std::atomic<bool>* stop = nullptr,
                  Communicator* comm = nullptr);

}  // namespace fracture::train
