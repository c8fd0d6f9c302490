#include "fracture/util/paths.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace fracture::util {

std::string weights_dir() {
  if (const char* d = std::getenv("FRACTURE_WEIGHTS_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/fracture/weights";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/fracture/weights";
}

std::string default_model_path() {
  namespace fs = std::filesystem;
  if (const char* m = std::getenv("FRACTURE_MODEL"); m && *m) {
    if (!fs::exists(m)) throw std::runtime_error(std::string("FRACTURE_MODEL names a missing file: ") + m);
    return m;
  }
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back(exe.parent_path().parent_path() / "share/fracture/model" / kDefaultModelFile);
#ifdef FRACTURE_SOURCE_DIR
  candidates.push_back(fs::path(FRACTURE_SOURCE_DIR) / "model" / kDefaultModelFile);
#endif
  std::string looked;
  for (const auto& c : candidates) {
    if (fs::exists(c)) return c.string();
    looked += "\n  " + c.string();
  }
  throw std::runtime_error("no --model given and the built-in model is missing; looked in:" + looked +
                           "\n(set FRACTURE_MODEL or pass --model)");
}

}  // namespace fracture::util
