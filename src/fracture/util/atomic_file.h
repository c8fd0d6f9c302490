#pragma once
// Writing outputs so that a crash or Ctrl-C never leaves a half-written file:
// everything goes to "<path>.tmp.<pid>" first and is renamed over <path> only
// once complete (rename is atomic on POSIX file systems).
#include <string>
#include <string_view>

namespace fracture::util {

// Writes `bytes` to `path` atomically. Throws std::runtime_error naming the
// path on any I/O failure; the previous file at `path`, if any, is untouched.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Reads a whole file; throws std::runtime_error naming the path on failure.
std::string read_file(const std::string& path);

}  // namespace fracture::util
