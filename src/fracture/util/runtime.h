#pragma once

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

}  // namespace fracture::util
