#include "fracture/util/atomic_file.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace fracture::util {

void write_file_atomic(const std::string& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(path + ": cannot open for writing: " + std::strerror(errno));
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                    std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
    const int err = errno;
    std::fclose(f);
    if (!ok) {
      std::remove(tmp.c_str());
      throw std::runtime_error(path + ": write failed: " + std::strerror(err));
    }
  }
  crash_point("write_file_atomic, before the rename");
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot replace: " + ec.message());
  }
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw std::runtime_error(path + ": is a folder, not a file");
  if (!S_ISREG(st.st_mode)) throw std::runtime_error(path + ": not a regular file (a device or pipe?); not read");
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    throw std::runtime_error(path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
                             std::to_string(max_bytes) + " allowed for this kind of file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  std::string data(static_cast<size_t>(st.st_size), '\0');
  const size_t n = std::fread(data.data(), 1, data.size(), f);
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error) throw std::runtime_error(path + ": read error");
  data.resize(n);  // the file shrank while being read
  return data;
}

int remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos || !e.is_regular_file()) continue;
    const std::string pid = name.substr(at + 5);
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const long p = std::stol(pid);
    if (p == ::getpid() || (::kill(static_cast<pid_t>(p), 0) == 0 || errno == EPERM)) continue;  // still running
    if (fs::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

void crash_point(const char* where) {
  static const long target = [] {
    const char* v = std::getenv("FRACTURE_CRASH_AT");
    return v && *v ? std::strtol(v, nullptr, 10) : 0L;
  }();
  static std::atomic<long> calls{0};
  if (target > 0 && ++calls == target) {
    std::fprintf(stderr, "FRACTURE_CRASH_AT=%ld: exiting at %s\n", target, where);
    std::_Exit(137);
  }
}

}  // namespace fracture::util
