#include "fracture/util/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include <cstdlib>
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

}  // namespace fracture::util
