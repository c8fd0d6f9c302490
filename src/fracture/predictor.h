#pragma once
// The library's face for using a trained model, shared by `fracture predict`,
// the tests and (issue 17) the server: load a model once, then score image
// files or image bytes. Every class's probability is returned; the label is
// the model's decision (two classes: the positive class at the model's
// threshold, chosen on validation; more: the most probable class). A model
// file may hold an ensemble (`fracture ensemble`): every network scores every
// image, their log-odds are averaged, and heat maps explain the average.
// Research use only - not a medical device.
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/train/checkpoint.h"

namespace fracture {

struct PredictorOptions {
  std::string model;  // a .safetensors from `fracture train` (or average, ensemble); "" = the built-in FracAtlas model
  std::string device = "auto";  // auto, cpu, cuda, cuda:N
  bool tta = false;  // average each image with its mirror image
  int batch_size = 16, workers = 2;  // for predict_files
  int64_t max_pixels = data::kDefaultMaxPixels;  // larger images are refused from their header
  // The network's number format on the CPU: fp32; bf16 where the CPU has
  // AVX512-BF16 or AMX; int8 where it has VNNI, for a calibrated model
  // (export/int8_calibration.h); auto: int8 where the model's calibration
  // passed its accuracy check and int8 runs here, else fp32. Speed and
  // validation ROC-AUC: docs/benchmarks.md.
  std::string precision = "auto";
  // On the CPU, run an EfficientNet-Lite's body as one oneDNN program
  // (models/onednn_body.h) where this build and the model allow it; false
  // keeps LibTorch's modules (the benchmarks compare the two).
  bool fused = true;
};

struct Prediction {
  std::string path;  // the file, or the name given with the bytes
  std::vector<double> probabilities;  // one per class, in the model's class order
  std::string label;  // the model's decision
  // Two classes: the positive class's probability, compared with `threshold`.
  // More: the probability of `label` (there is no threshold).
  double probability = std::numeric_limits<double>::quiet_NaN();
  std::optional<double> threshold;
  // Time to decode and score it, in milliseconds; for files, its batch's time
  // shared equally among the batch's images.
  double milliseconds = 0;
  std::string error;  // not empty: the input could not be scored, and this says why (naming it)
  bool ok() const { return error.empty(); }
};

// One image decoded and made ready for the network, not yet scored: the
// server decodes on its request threads and scores many at once.
struct PreparedImage {
  std::string name;
  torch::Tensor input;  // [3, H, W], preprocessed as the model's card says
};

// A heat map laid over the picture, and where its strongest cell lies.
struct HeatMap {
  cv::Mat overlay;  // BGR 8-bit, the longer side at most 1024 px
  cv::Mat picture;  // the picture under it, the same size (8-bit grey or BGR)
  int target_class = 0;
  double peak_x = 0, peak_y = 0;  // the map's maximum, as fractions of the image's width and height
};

class Predictor {
 public:
  // Loads and readies the model; throws naming the file and the problem.
  explicit Predictor(PredictorOptions options);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  const train::ModelInfo& info() const;
  const std::vector<std::string>& classes() const;
  const std::string& model_path() const;
  std::string model_name() const;  // the model file's name, as predictions report it
  const std::string& sha256() const;
  // How the network runs: "oneDNN program, fp32", or "LibTorch" (and why not the program).
  const std::string& engine() const;
  bool binary() const { return classes().size() == 2; }

  // The index of a class by name, or -1.
  int class_index(const std::string& name) const;
  // The decision for one image's class probabilities (see above).
  Prediction decide(std::vector<double> probabilities) const;

  // Scores files in order, a batch at a time, calling on_batch with each
  // batch's predictions in input order (unreadable inputs included, with
  // their error) as soon as it is scored. Memory stays bounded.
  void predict_files(const std::vector<std::string>& paths,
                     const std::function<void(const std::vector<Prediction>&)>& on_batch,
                     const std::string& progress_label = "");
  // One image given as its encoded bytes (JPEG, PNG, BMP, TIFF or DICOM, told
  // by content); `name` names it in errors.
  Prediction predict_bytes(const std::string& bytes, const std::string& name);
  // The two halves of predict_bytes, for callers that gather images from
  // several threads into one forward pass. prepare is thread-safe and does
  // not touch the network; it throws data::ImageError naming the input (a
  // JPEG without its end marker too: its missing part would be made up).
  PreparedImage prepare(const std::string& bytes, const std::string& name) const;
  // Scores prepared images (all of one size, as prepare makes them) in one
  // forward pass; each prediction's milliseconds is the pass's time shared.
  std::vector<Prediction> score(const std::vector<PreparedImage>& images);

  // Every class's probability for labelled samples, as `evaluate` needs
  // them: [N, classes] in double, a NaN row for each unreadable sample
  // (named in `failures`). Memory stays bounded (batches).
  torch::Tensor probabilities_of(const std::vector<data::Sample>& samples, const std::string& progress_label,
                                 std::vector<std::string>* failures = nullptr);
  // The pointing game on samples with fracture boxes (explain/localisation.h);
  // null where no sample has boxes. Throws std::invalid_argument where the
  // model cannot play it (no spatial features).
  nlohmann::json pointing_game(const std::vector<data::Sample>& samples);

  // The class a heat map should explain: the positive class of a two-class
  // model (where its fracture evidence lies), else the predicted class.
  int heat_map_class(const Prediction& p) const;
  // Grad-CAM of `target_class` for an image file; throws naming the file.
  HeatMap heat_map(const std::string& path, int target_class);
  HeatMap heat_map_of_bytes(const std::string& bytes, const std::string& name, int target_class);

 private:
  struct State;
  std::unique_ptr<State> s_;
  // One forward or heat map at a time: the network is shared. Recursive: a
  // predict_files callback may ask for a heat map while the files are scored.
  std::recursive_mutex net_mu_;
};

// One prediction as `fracture predict` writes it in JSON lines and the server
// answers it: path, label, probability, threshold (two classes), probabilities
// {class: p} in the model's order, model, model_sha256; an unreadable input is
// {path, error}.
nlohmann::ordered_json to_json(const Prediction& p, const Predictor& model);
// Adds the fracture-type model's prediction for the same image (predict
// --types) as type and types; nothing where it could not be scored.
void add_type(nlohmann::ordered_json& j, const Prediction& type, const Predictor& type_model);

}  // namespace fracture
