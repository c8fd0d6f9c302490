#pragma once
// Parameter-name conventions. Weights come named the way the code that
// trained them named its modules; these functions translate between ours and
// torchvision's, timm's and lukemelas' (EfficientNet-PyTorch, also used by
// the EfficientNet-Lite ports), so that a user can load what they downloaded.
#include <string>
#include <utility>
#include <vector>

#include "fracture/models/classifier.h"
#include "fracture/models/weights_io.h"

namespace fracture::models {

enum class WeightNaming { Fracture, Torchvision, Timm, Lukemelas };

std::string naming_name(WeightNaming naming);
WeightNaming parse_naming(const std::string& name);  // throws on unknown names

// Guesses the convention from characteristic keys; throws when none fits.
WeightNaming detect_naming(const TensorMap& tensors, const std::string& origin);

// (our name, their name) for every parameter and buffer of `model`.
// Throws if the convention does not cover this architecture.
std::vector<std::pair<std::string, std::string>> name_pairs(ClassifierImpl& model, WeightNaming naming);

// Renames foreign tensors to ours (tensors the model does not have are kept
// under their own names so that load reports can show them).
TensorMap to_our_names(ClassifierImpl& model, const TensorMap& theirs, WeightNaming naming);
// The model's state under another convention's names.
TensorMap to_their_names(ClassifierImpl& model, WeightNaming naming);

struct LoadReport {
  std::vector<std::string> loaded, missing, unexpected, reinitialised;
};

// Copies tensors named our way into the model (any float dtype is cast).
// A classifier whose shape differs (a new head for transfer learning) is left
// freshly initialised and listed in `reinitialised`. Any other missing or
// mis-shaped tensor throws, naming `origin` and the tensors.
LoadReport load_into(ClassifierImpl& model, const TensorMap& ours, const std::string& origin);

// Reads a weights file in any supported format and naming and loads it.
LoadReport load_weights_file(ClassifierImpl& model, const std::string& path);

}  // namespace fracture::models
