#pragma once
// Runs the `fracture` executable as a user's shell would, keeping its
// standard output and standard error apart.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>

#include "fracture/util/atomic_file.h"

namespace fracture::testing {

struct CliResult {
  int code = -1;    // exit status; 128 + N when killed by signal N
  std::string out;  // standard output
  std::string err;  // standard error
};

// `args` is appended to the program's path as shell words; `env` (e.g.
// "FRACTURE_CRASH_AT=3") goes in front of it.
inline CliResult run_cli(const std::string& args, const std::string& env = "") {
  char err_path[] = "/tmp/fracture_stderr_XXXXXX";
  const int fd = ::mkstemp(err_path);
  ::close(fd);
  const std::string cmd = env + " " + std::string(FRACTURE_CLI) + " " + args + " 2>" + err_path;
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  CliResult r;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.err = util::read_file(err_path);
  std::remove(err_path);
  return r;
}

}  // namespace fracture::testing
