#pragma once
// Data-parallel training across processes (ranks) with torch.distributed's
// engine, c10d with Gloo: every rank holds the whole model, trains on its own
// shard of each global batch, and the ranks sum their gradients before each
// step, so every replica takes the same step.
//
// The launch contract is torchrun's: RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT in the environment (docs/distributed.md).
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace fracture::train {

struct WorldInfo {
  int rank = 0, size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) its agent already
  // hosts the store at MASTER_ADDR:MASTER_PORT: every rank joins it as a
  // client, under this key prefix ("/worker/attempt_<restart count>"), as
  // PyTorch's env:// rendezvous does. Empty: rank 0 hosts the store.
  std::string agent_store_prefix;
};

// torchrun's variables; a world of one when WORLD_SIZE is unset. Throws
// std::invalid_argument naming the variable that is malformed or missing.
WorldInfo world_from_environment();

// A process group over every rank. Each call is a collective: every rank
// makes the same calls in the same order. A rank that stops (killed, or an
// error) makes the others' next collective throw std::runtime_error within
// the timeout instead of hanging.
class Communicator {
 public:
  Communicator(const WorldInfo& world, std::chrono::milliseconds timeout);
  ~Communicator();
  int rank() const { return world_.rank; }
  int size() const { return world_.size; }

  // Sums each tensor over the ranks, in place; the tensors travel flattened
  // into buckets of at most 16 MB (one collective per bucket, not per tensor).
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors);
  // Each rank's rows [n_r, k] (n_r may differ, may be 0) -> every rank's rows,
  // rank 0's first: [sum n_r, k] float32.
  torch::Tensor all_gather_rows(const torch::Tensor& rows);
  // Rank 0's values into every rank's tensors, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors);
  void barrier();
  // Rank 0's text, on every rank.
  std::string share_text(const std::string& text);

 private:
  struct Group;
  WorldInfo world_;
  std::unique_ptr<Group> group_;
};

}  // namespace fracture::train
