#pragma once
// int8 calibration: the activation ranges the int8 oneDNN program
// (models/onednn_body.h, `--precision int8`) quantises to, measured once on
// training images and kept in the model file's description with the result
// of an accuracy check on validation images, so that predict, evaluate and
// the server need nothing but the model, and `--precision auto` knows
// whether int8 may be used.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/int8_record.h"  // what it writes into the model file, and reads back

namespace fracture::exporter {

// The accuracy check: validation ROC-AUC (macro one-vs-rest for N classes)
// in int8 within this of fp32's (issue 19's rule).
inline constexpr double kInt8AucTolerance = 0.002;

struct CalibrationOptions {
  size_t max_images = 256;  // spread evenly over the calibration samples
  // Each activation's range: this percentile of its magnitudes in each
  // batch of 16 images, the largest over batches (100: the maximum).
  // 99.999 was chosen on validation (docs/benchmarks.md).
  double percentile = 99.999;
  std::string data;  // where the samples came from, for the description
};

struct Int8Check {
  std::string split;
  size_t images = 0;  // readable ones
  double roc_auc_fp32 = 0, roc_auc_int8 = 0;
  // With images from several sources, each source's {fp32, int8} ROC-AUC: a
  // pooled figure can hide a shift in one data set that another offsets.
  std::map<std::string, std::pair<double, double>> roc_auc_by_source;
  size_t labels_changed = 0;
  bool passed = false;
  std::string cpu;  // the int8 kernels' family it ran on (models::int8_cpu_class)
};

// The check's rule: the pooled ROC-AUC, and each source's where it has one,
// within kInt8AucTolerance of fp32's, either way.
bool int8_check_passes(const Int8Check& check);

struct CalibrationSummary {
  size_t images = 0;
  std::vector<std::string> unreadable;  // one message per file skipped, naming it
  size_t activations = 0;               // ranges measured
  std::optional<Int8Check> check;       // none: not asked for, or this CPU cannot run int8
  std::string no_check_reason;
};

// Measures `model`'s ranges on `samples` and puts them in its description:
// an ensemble's members' one after another, each member's measured on its
// own activations. Unreadable files are skipped and listed; none readable is
// an error.
CalibrationSummary calibrate_int8(train::LoadedNetworks& model, const std::vector<data::Sample>& samples,
                                  const CalibrationOptions& options);

// Loads `model_path`, calibrates it on `samples`, and writes the calibrated
// copy to `out_path` (atomically). With `check_samples`, scores them in fp32
// and int8 with that copy and records the check in it (`check_split` names
// them); where this CPU cannot run int8, says why instead.
CalibrationSummary calibrate_int8_file(const std::string& model_path, const std::vector<data::Sample>& samples,
                                       const CalibrationOptions& options, const std::string& out_path,
                                       const std::vector<data::Sample>& check_samples = {},
                                       const std::string& check_split = "val");

}  // namespace fracture::exporter
