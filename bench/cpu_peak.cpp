// This CPU's measured peak for the number formats the oneDNN program runs:
// one large matrix product (oneDNN's matmul, M = N = K = 2048) repeated for
// SECONDS, with THREADS threads, in fp32, bf16 (where the CPU has it) and
// int8 (u8 x s8 -> s32, where it has VNNI). The network's GFLOP/s are read
// against these (bench/onnx_peers.py prints both; docs/benchmarks.md).
//
//   cpu_peak [SECONDS] [THREADS]
// prints one JSON line: {"threads": ..., "fp32_gflops": ..., "bf16_gflops": ..., "int8_gops": ...}
// (null where the CPU lacks the instructions).
#include <chrono>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <torch/torch.h>

#include "fracture/util/runtime.h"

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

bool cpu_has(dnnl::cpu_isa wanted) {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa()), bits = static_cast<unsigned>(wanted);
  return (isa & bits) == bits;
}

// Operations a second (2 per multiply-add) of one matmul in these formats.
double matmul_rate(dt a_type, dt b_type, dt c_type, double seconds) {
  constexpr int64_t n = 2048;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const dnnl::memory::desc a({n, n}, a_type, tag::ab), b_any({n, n}, b_type, tag::any), c({n, n}, c_type, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b_any, c), engine);
  // The weights in the layout the kernel wants, as the program packs them; contents do not matter for speed.
  dnnl::memory ma(a, engine), mb(pd.weights_desc(), engine), mc(c, engine);
  std::memset(ma.get_data_handle(), 1, a.get_size());
  std::memset(mb.get_data_handle(), 1, pd.weights_desc().get_size());
  dnnl::matmul mm(pd);
  auto once = [&] {
    mm.execute(stream, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    stream.wait();
  };
  once();  // warm-up: the kernel is generated
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  int runs = 0;
  double elapsed = 0;
  while (elapsed < seconds) {
    once();
    ++runs;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  }
  return 2.0 * n * n * n * runs / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::stod(argv[1]) : 3;
  fracture::util::configure_runtime(argc > 2 ? std::stoi(argv[2]) : 0);
  nlohmann::json out{{"threads", torch::get_num_threads()}};
  out["fp32_gflops"] = matmul_rate(dt::f32, dt::f32, dt::f32, seconds) / 1e9;
  out["bf16_gflops"] = nullptr;
  out["int8_gops"] = nullptr;
  if (cpu_has(dnnl::cpu_isa::avx512_core_bf16)) out["bf16_gflops"] = matmul_rate(dt::bf16, dt::bf16, dt::f32, seconds) / 1e9;
  if (cpu_has(dnnl::cpu_isa::avx512_core_vnni) || cpu_has(dnnl::cpu_isa::avx2_vnni))
    out["int8_gops"] = matmul_rate(dt::u8, dt::s8, dt::s32, seconds) / 1e9;
  std::cout << out.dump() << "\n";
}
