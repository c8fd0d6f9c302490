#pragma once
// `fracture train --nproc N`: N local ranks of this same program, started
// with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), so that one command trains data-parallel on one machine.
#include <chrono>
#include <string>
#include <vector>

namespace fracture::train {

// The arguments each rank gets: this process's own (/proc/self/cmdline)
// without --nproc, and with --threads cores/ranks when threads is 0 (the
// cores shared among the ranks).
std::vector<std::string> rank_command_line(int ranks, int threads);

// Starts `ranks` copies of /proc/self/exe with `args` (argv[1...]) and waits
// for them. When one fails, the others get `grace` to end on their own (they
// see the failure at their next collective), then SIGTERM, then SIGKILL.
// Returns 0 when every rank succeeded, else the first failure's exit code
// (128 + signal for a rank killed by one), after naming it on stderr.
int run_local_ranks(int ranks, const std::vector<std::string>& args, std::chrono::seconds grace);

}  // namespace fracture::train
