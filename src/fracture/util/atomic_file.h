#pragma once
// Writing outputs so that a crash or Ctrl-C never leaves a half-written file:
// everything goes to "<path>.tmp.<pid>" first and is renamed over <path> only
// once complete (rename is atomic on POSIX file systems).
#include <cstdint>
#include <string>
#include <string_view>

namespace fracture::util {

// Writes `bytes` to `path` atomically. Throws std::runtime_error naming the
// path on any I/O failure; the previous file at `path`, if any, is untouched.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Reads a whole regular file of at most `max_bytes`; throws
// std::runtime_error naming the path and the problem otherwise. Devices,
// named pipes and folders are refused before they are opened (reading
// /dev/zero or a pipe named scan.jpg would never end).
inline constexpr uint64_t kNoSizeLimit = ~uint64_t{0};
std::string read_file(const std::string& path, uint64_t max_bytes = kNoSizeLimit);

// Removes "<path>.tmp.<pid>" files left in `dir` by processes that no longer
// run (killed in the middle of write_file_atomic). Returns how many.
int remove_stale_temporaries(const std::string& dir);

// Test hook for crash safety: when $FRACTURE_CRASH_AT is N, the N-th call of
// crash_point() in this process ends it at once (_exit(137), as kill -9
// would). Placed between the writes that commit a training epoch.
void crash_point(const char* where);

}  // namespace fracture::util
