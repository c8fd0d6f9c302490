#pragma once
#include <string>

namespace fracture::util {

// Where pretrained weights live: $FRACTURE_WEIGHTS_DIR if set, else
// $XDG_CACHE_HOME/fracture/weights, else ~/.cache/fracture/weights.
std::string weights_dir();

}  // namespace fracture::util
