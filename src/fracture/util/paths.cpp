#include "fracture/util/paths.h"

#include <cctype>
#include <cstdint>
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

namespace {

// Where built-in models live: next to an installed binary, then the source tree.
std::vector<std::filesystem::path> builtin_model_dirs() {
  namespace fs = std::filesystem;
  std::vector<fs::path> dirs;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path().parent_path() / "share/fracture/model");
#ifdef FRACTURE_SOURCE_DIR
  dirs.push_back(fs::path(FRACTURE_SOURCE_DIR) / "model");
#endif
  return dirs;
}

std::string find_builtin(const std::string& name, const std::string& why_needed) {
  std::string looked;
  for (const auto& dir : builtin_model_dirs()) {
    const auto c = dir / (name + ".safetensors");
    if (std::filesystem::exists(c)) return c.string();
    looked += "\n  " + c.string();
  }
  throw std::runtime_error(why_needed + "; looked in:" + looked);
}

}  // namespace

std::string default_model_path() {
  namespace fs = std::filesystem;
  if (const char* m = std::getenv("FRACTURE_MODEL"); m && *m) {
    if (!fs::exists(m)) throw std::runtime_error(std::string("FRACTURE_MODEL names a missing file: ") + m);
    return m;
  }
  return find_builtin(fs::path(kDefaultModelFile).stem().string(),
                      "no --model given and the built-in model is missing (set FRACTURE_MODEL or pass --model)");
}

std::string resolve_model(const std::string& name_or_path) {
  if (name_or_path.empty()) return default_model_path();
  std::error_code ec;
  if (std::filesystem::exists(name_or_path, ec)) return name_or_path;
  const bool plain_name = name_or_path.find_first_of("/.") == std::string::npos;
  if (!plain_name) throw std::runtime_error(name_or_path + ": no such model file");
  return find_builtin(name_or_path, "--model " + name_or_path + ": no such file, and no built-in model of that name");
}

std::string model_card_path(const std::string& model_path) {
  const std::filesystem::path model(model_path);
  std::string upper = model.stem().string();
  for (auto& c : upper) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::error_code ec;
  for (const auto& name : {model.stem().string() + ".md", upper + "_CARD.md"}) {
    const auto card = model.parent_path() / name;
    if (std::filesystem::is_regular_file(card, ec)) return card.string();
  }
  return "";
}

std::string escape_invalid_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    // Length of the sequence this lead byte starts, and the smallest code point it may encode.
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (size_t k = 1; ok && k < n; ++k) {
      const auto cont = static_cast<unsigned char>(s[i + k]);
      ok = (cont >> 6) == 0x2;
      cp = (cp << 6) | (cont & 0x3F);
    }
    static const uint32_t smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= smallest[n] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++i;
    }
  }
  return out;
}

}  // namespace fracture::util
