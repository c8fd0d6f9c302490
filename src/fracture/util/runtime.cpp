#include "fracture/util/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <thread>

namespace fracture::util {

void configure_runtime(int threads) {
  // Largest mmap threshold glibc accepts on 64-bit (32 MiB); trimming only above 1 GiB free.
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  if (threads > 0) {
    torch::set_num_threads(threads);
  } else if (!std::getenv("OMP_NUM_THREADS")) {
    torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  }
}

namespace {

// The value of the first "key : value" line of a cpuinfo text whose key is `key`.
std::string cpuinfo_field(const std::string& cpuinfo, const std::string& key) {
  std::istringstream lines(cpuinfo);
  for (std::string line; std::getline(lines, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    if (name != key) continue;
    const auto start = line.find_first_not_of(' ', colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "";
}

}  // namespace

Machine describe_machine(const std::string& cpuinfo) {
  Machine m;
  m.cpu = cpuinfo_field(cpuinfo, "model name");
  std::istringstream words(cpuinfo_field(cpuinfo, "flags"));
  const std::set<std::string> flags((std::istream_iterator<std::string>(words)), std::istream_iterator<std::string>());
  for (const char* isa : {"avx2", "avx512f", "avx512_bf16", "amx_tile"})
    if (flags.count(isa)) m.isa.emplace_back(isa);
  for (const char* cap : {"ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"})  // oneDNN reads the first it finds
    if (const char* v = std::getenv(cap); v && *v) {
      m.onednn_isa_cap = v;
      break;
    }
  m.threads = torch::get_num_threads();
  return m;
}

Machine describe_machine() {
  std::ifstream in("/proc/cpuinfo");
  std::stringstream text;
  text << in.rdbuf();
  return describe_machine(text.str());
}

std::string Machine::str() const {
  std::string s = cpu.empty() ? "unknown CPU" : cpu;
  std::string sets;
  for (const auto& i : isa) sets += (sets.empty() ? "" : " ") + i;
  s += " (" + (sets.empty() ? std::string("no AVX2") : sets) + ")";
  if (!onednn_isa_cap.empty()) s += ", oneDNN capped at " + onednn_isa_cap;
  return s + ", " + std::to_string(threads) + (threads == 1 ? " thread" : " threads");
}

}  // namespace fracture::util
