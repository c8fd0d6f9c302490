#pragma once
#include <string>

namespace fracture::util {

// Where pretrained weights live: $FRACTURE_WEIGHTS_DIR if set, else
// $XDG_CACHE_HOME/fracture/weights, else ~/.cache/fracture/weights.
std::string weights_dir();

// The FracAtlas model shipped with the project, used when no --model is
// given: $FRACTURE_MODEL if set, else <prefix>/share/fracture/model/ next to
// an installed binary, else the source tree's model/ folder. Throws, naming
// every place it looked, when none exists.
std::string default_model_path();
inline constexpr const char* kDefaultModelFile = "fracatlas.safetensors";

}  // namespace fracture::util
