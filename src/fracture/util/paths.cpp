#include "fracture/util/paths.h"

#include <cstdlib>

namespace fracture::util {

std::string weights_dir() {
  if (const char* d = std::getenv("FRACTURE_WEIGHTS_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/fracture/weights";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/fracture/weights";
}

}  // namespace fracture::util
