#pragma once
// A run's folder: what each file is called, what a resumable run left there,
// and the refusal to train over a run by accident.
//
// Each epoch is committed crash-safely: its files get names of their own
// (state/epoch-NN.*) and the state record (train_state.json), written last
// and atomically, names the epoch. A kill at any instant leaves either the
// previous epoch's record, whose files are all still there, or this one's.
#include <nlohmann/json.hpp>

#include <string>

#include "fracture/train/options.h"

namespace fracture::train {

struct EpochRecord;

// Refuses (std::runtime_error) to train into a folder that already holds a
// run, unless options.resume or options.overwrite; with overwrite, removes
// that run's files first. Called before anything is written there.
void prepare_run_folder(const TrainOptions& options);

class RunFolder {
 public:
  // averaging: the model to use (best.safetensors) is written at the end,
  // and the best single epoch goes to best-epoch.safetensors.
  RunFolder(std::string dir, bool averaging);

  std::string state_record() const { return dir_ + "/train_state.json"; }
  std::string state_file(int epoch, const char* what) const;  // state/epoch-NN.<what>
  std::string last_model() const { return dir_ + "/last.safetensors"; }
  std::string model() const { return dir_ + "/best.safetensors"; }
  std::string best_epoch_model() const { return best_epoch_; }
  std::string snapshot(int epoch) const;  // epoch-NN.safetensors, averaged at the end
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  // The state record a --resume continues from, checked for the keys it
  // needs and for the same recipe; throws naming the file otherwise.
  nlohmann::json read_state(const nlohmann::json& recipe_now) const;
  // After an epoch's commit: the user's copy of the last model, and no state
  // files that no record names (a killed attempt's, or the epoch before).
  // Done again on resume, as a kill may have come between commit and copy.
  void after_commit(int epoch) const;

 private:
  std::string dir_, best_epoch_;
};

nlohmann::json record_json(const EpochRecord& r);
EpochRecord record_from_json(const nlohmann::json& j);

}  // namespace fracture::train
