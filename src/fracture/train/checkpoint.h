#pragma once
// A trained model on disk: one safetensors file holding the weights (our
// naming) and, in its metadata, everything needed to use it - architecture,
// classes, input preprocessing and the operating threshold chosen on
// validation. `fracture predict` and `evaluate` need nothing else.
#include <nlohmann/json.hpp>

#include <array>
#include <string>
#include <vector>

#include "fracture/data/transforms.h"
#include "fracture/models/classifier.h"
#include "fracture/models/weights_io.h"

namespace fracture::train {

struct ModelInfo {
  std::string architecture;  // registry name, e.g. "efficientnet_lite0"
  std::vector<std::string> class_names;
  data::PreprocessOptions preprocess;
  double threshold = 0.5;  // on the positive-class probability (binary models)
  std::string threshold_rule = "default 0.5";
  double cell_pooling = 0;  // ClassifierImpl::set_cell_pooling; 0: average pooling
  // Networks in the file: more than one is an ensemble (save_ensemble), whose
  // members share everything above and differ in their weights only.
  int members = 1;
  nlohmann::json extra = nlohmann::json::object();  // training summary, metrics, provenance

  nlohmann::json to_json() const;
  static ModelInfo from_json(const nlohmann::json& j, const std::string& origin);
};

struct LoadedModel {
  models::Classifier net;
  ModelInfo info;
  std::string sha256;  // of the model file: predictions and evaluations name it
};

// Every network of a model file: one, or an ensemble's members in order.
struct LoadedNetworks {
  std::vector<models::Classifier> nets;
  ModelInfo info;
  std::string sha256;
};

// Written atomically: a crash never leaves a half-written model. Refuses a
// network prepared for inference (BatchNorm folded into its convolutions):
// reloaded, it would apply BatchNorm twice.
void save_model(const std::string& path, models::ClassifierImpl& net, const ModelInfo& info);
// An ensemble as one file: member K's weights are named "members.K.<name>"
// and the description says how many there are. Written atomically.
void save_ensemble(const std::string& path, const std::vector<models::Classifier>& nets, const ModelInfo& info);
// Throws naming the file and the problem if it is not a fracture model, its
// description is out of range (threshold, input size, std, classes), or its
// weights do not fit (shape, kind of number, NaN or infinite values).
LoadedNetworks load_networks(const std::string& path);
// The same for a file of one network (what training, calibration, export and
// averaging work on); an ensemble is refused, naming the file.
LoadedModel load_model(const std::string& path);
// The checks load_model makes of a description; throws naming `origin`.
void validate_model_info(const ModelInfo& info, const std::string& origin);

// Uniform mean of the weights in several model files of one architecture
// (checkpoint averaging); integer buffers (BatchNorm's batch counters) are
// taken from the last file. Throws naming the file that does not match.
models::TensorMap average_weights(const std::vector<std::string>& paths);

std::string resize_mode_name(data::ResizeMode m);
data::ResizeMode parse_resize_mode(const std::string& s);

}  // namespace fracture::train
