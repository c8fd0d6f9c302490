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
// A --model argument: a model file, or the name of a built-in model
// ("fracatlas": <model folder>/fracatlas.safetensors, in the places above);
// "" is the default model. Throws naming the argument and where it looked.
std::string resolve_model(const std::string& name_or_path);

// A model's card, beside its file: <stem>.md, else <STEM>_CARD.md (dashes as
// underscores: bone-types.safetensors -> BONE_TYPES_CARD.md); "" if neither.
std::string model_card_path(const std::string& model_path);

// `text` with every byte that is not part of valid UTF-8 written as \xNN
// (as Python's backslashreplace does), so that a file name from a foreign
// file system can go into JSON without failing the whole output.
std::string escape_invalid_utf8(const std::string& text);

}  // namespace fracture::util
