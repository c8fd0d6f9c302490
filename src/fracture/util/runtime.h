#pragma once

#include <string>
#include <vector>

namespace fracture::util {

// Process-wide settings every front end applies first, both measured on the
// 2-core development machine (docs/benchmarks.md):
//  - compute threads: this machine's OpenMP reports 1 thread by default, so
//    LibTorch used one core of two. `threads` > 0 sets the count; 0 uses
//    every core unless OMP_NUM_THREADS says otherwise. (2 threads: 2.0x.)
//  - glibc malloc: activations of tens of MB were returned to the kernel
//    after every batch and faulted back in (700k page faults for 60 images);
//    keeping freed memory in the process cut prediction time by 25%.
void configure_runtime(int threads = 0);

// The machine a run's numbers came from. oneDNN picks its kernels by the
// CPU's instruction sets, and their sums round differently, so a seed trains
// to bit-identical weights on CPUs of one kind only: the FracAtlas +
// bone-fracture-yolo recipe, seed 42, scored 0.925 on FracAtlas validation
// trained on an AVX2 CPU and 0.901 on an AVX-512 one (docs/results.md).
// Training logs it and model files record it beside the seed.
struct Machine {
  std::string cpu;               // /proc/cpuinfo's model name; "" if unknown
  std::vector<std::string> isa;  // those it has of avx2, avx512f, avx512_bf16, amx_tile
  std::string onednn_isa_cap;    // $ONEDNN_MAX_CPU_ISA (or $DNNL_MAX_CPU_ISA); "" if unset
  int threads = 1;               // compute threads
  std::string str() const;       // "Intel(R) Xeon(R) Processor (avx2 avx512f), 2 threads"
};
Machine describe_machine();
// The same from a /proc/cpuinfo text (testable).
Machine describe_machine(const std::string& cpuinfo);

}  // namespace fracture::util
