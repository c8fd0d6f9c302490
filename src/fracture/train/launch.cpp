#include "fracture/train/launch.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fracture::train {
namespace {

// A port nobody listens on now (the kernel's choice); rank 0's store takes it.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("--nproc: cannot open a socket to find a free port");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("--nproc: cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

std::vector<std::string> rank_command_line(int ranks, int threads) {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t at = raw.find('\0'); at != std::string::npos && at + 1 < raw.size();) {  // argv[1...]
    const size_t end = raw.find('\0', at + 1);
    args.push_back(raw.substr(at + 1, end - at - 1));
    at = end;
  }
  for (size_t i = 0; i < args.size(); ++i)  // every rank is one process: no --nproc of its own
    if (args[i] == "--nproc") {
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(std::min(args.size(), i + 2)));
      break;
    } else if (args[i].rfind("--nproc=", 0) == 0) {
      args.erase(args.begin() + static_cast<long>(i));
      break;
    }
  if (threads == 0) {
    args.push_back("--threads");
    args.push_back(std::to_string(std::max(1u, std::thread::hardware_concurrency() / static_cast<unsigned>(ranks))));
  }
  return args;
}

int run_local_ranks(int ranks, const std::vector<std::string>& args, std::chrono::seconds grace) {
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("--nproc: cannot start rank " + std::to_string(r));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(ranks).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(ranks).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      std::vector<char*> argv{const_cast<char*>("fracture")};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  spdlog::info("--nproc {}: ranks 0-{} started, rendezvous at 127.0.0.1:{}", ranks, ranks - 1, port);
  int first_failure = -1, failure_code = 0, running = ranks;
  auto deadline = std::chrono::steady_clock::time_point::max();
  bool terminated = false;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      --running;
      const int rank = static_cast<int>(std::find(pids.begin(), pids.end(), pid) - pids.begin());
      pids[static_cast<size_t>(rank)] = 0;
      if (exit_code(status) != 0) {
        spdlog::error("rank {} of {} exited with code {}{}", rank, ranks, exit_code(status),
                      first_failure < 0 ? "; stopping the others" : "");
        if (first_failure < 0) {
          first_failure = rank;
          failure_code = exit_code(status);
          deadline = std::chrono::steady_clock::now() + grace;
        }
      }
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      for (pid_t p : pids)
        if (p > 0) ::kill(p, terminated ? SIGKILL : SIGTERM);
      if (!terminated) spdlog::error("ranks still running {} s after rank {} failed: terminated", grace.count(), first_failure);
      terminated = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return first_failure < 0 ? 0 : failure_code;
}

}  // namespace fracture::train
