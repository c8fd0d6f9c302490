#include "fracture/train/distributed.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>
#include <map>
#include <stdexcept>

namespace fracture::train {
namespace {

int env_int(const char* name, int fallback, bool required) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    if (required) throw std::invalid_argument(std::string(name) + " is not set (torchrun sets it; see docs/distributed.md)");
    return fallback;
  }
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1'000'000)
    throw std::invalid_argument(fmt::format("{}='{}': must be a whole number", name, v));
  return static_cast<int>(x);
}

constexpr int64_t kBucketElements = 4 << 20;  // 16 MB of float32

// The tensors one after another, flattened: what travels in one collective.
torch::Tensor flatten(const std::vector<torch::Tensor>& tensors, torch::ScalarType kind) {
  std::vector<torch::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.detach().reshape(-1).to(torch::kCPU).to(kind));
  return torch::cat(parts);
}

// And back into the tensors, in place.
void unflatten_into(const torch::Tensor& flat, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard g;
  int64_t at = 0;
  for (const auto& t : tensors) {
    t.copy_(flat.slice(0, at, at + t.numel()).view(t.sizes()));
    at += t.numel();
  }
}

}  // namespace

WorldInfo world_from_environment() {
  WorldInfo w;
  w.size = env_int("WORLD_SIZE", 1, false);
  if (w.size < 1) throw std::invalid_argument("WORLD_SIZE must be 1 or more");
  if (w.size == 1) return w;
  w.rank = env_int("RANK", 0, true);
  w.local_rank = env_int("LOCAL_RANK", w.rank, false);
  if (w.rank >= w.size) throw std::invalid_argument(fmt::format("RANK={} with WORLD_SIZE={}: must be below it", w.rank, w.size));
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) w.master_addr = a;
  else throw std::invalid_argument("MASTER_ADDR is not set (torchrun sets it; see docs/distributed.md)");
  w.master_port = env_int("MASTER_PORT", 0, true);
  if (w.master_port < 1 || w.master_port > 65535)
    throw std::invalid_argument(fmt::format("MASTER_PORT={}: must be a port, 1-65535", w.master_port));
  if (const char* a = std::getenv("TORCHELASTIC_USE_AGENT_STORE"); a && std::string(a) == "True")
    w.agent_store_prefix = fmt::format("/worker/attempt_{}", env_int("TORCHELASTIC_RESTART_COUNT", 0, false));
  return w;
}

struct Communicator::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
};

namespace {

// Runs one collective and waits; a failure names this rank and the likely cause.
template <typename F>
void collective(int rank, const char* what, F&& start) {
  try {
    start()->wait();
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("rank {}: {} failed - another rank has probably stopped ({})", rank, what,
                                         e.what()));
  }
}

}  // namespace

Communicator::Communicator(const WorldInfo& world, std::chrono::milliseconds timeout)
    : world_(world), group_(std::make_unique<Group>()) {
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(world.master_port);
  so.isServer = world.rank == 0 && world.agent_store_prefix.empty();
  so.numWorkers = static_cast<std::size_t>(world.size);
  so.timeout = timeout;
  try {
    group_->store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, so);
    if (!world.agent_store_prefix.empty())
      group_->store = c10::make_intrusive<c10d::PrefixStore>(world.agent_store_prefix, group_->store);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // On one machine, loopback; across machines, the address this host
    // resolves to (GLOO_SOCKET_IFNAME picks an interface, as in PyTorch).
    const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
    const bool local = world.master_addr == "127.0.0.1" || world.master_addr == "localhost";
    options->devices.push_back(iface && *iface ? c10d::ProcessGroupGloo::createDeviceForInterface(iface)
                               : local         ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                               : c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 1;
    group_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, world.rank, world.size, options);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("rank {} of {}: cannot join the process group at {}:{} ({})", world.rank,
                                         world.size, world.master_addr, world.master_port, e.what()));
  }
}

Communicator::~Communicator() = default;

void Communicator::all_reduce_sum(const std::vector<torch::Tensor>& tensors) {
  size_t i = 0;
  while (i < tensors.size()) {
    // One bucket: consecutive tensors up to kBucketElements (a larger tensor alone).
    std::vector<torch::Tensor> bucket;
    int64_t elements = 0;
    while (i < tensors.size() && (bucket.empty() || elements + tensors[i].numel() <= kBucketElements)) {
      elements += tensors[i].numel();
      bucket.push_back(tensors[i++]);
    }
    std::vector<torch::Tensor> flat{flatten(bucket, torch::kFloat)};
    collective(world_.rank, "all-reduce", [&] { return group_->gloo->allreduce(flat); });
    unflatten_into(flat[0], bucket);
  }
}

torch::Tensor Communicator::all_gather_rows(const torch::Tensor& rows) {
  const auto local = rows.detach().to(torch::kFloat).contiguous();
  const int64_t k = local.dim() > 1 ? local.size(1) : 1;
  std::vector<torch::Tensor> count{torch::tensor({static_cast<float>(local.size(0))})};
  std::vector<std::vector<torch::Tensor>> counts(1);
  for (int r = 0; r < world_.size; ++r) counts[0].push_back(torch::zeros({1}));
  collective(world_.rank, "all-gather (sizes)", [&] { return group_->gloo->allgather(counts, count); });
  int64_t most = 0;
  for (const auto& c : counts[0]) most = std::max(most, static_cast<int64_t>(c.item<float>()));
  // Gloo gathers equal shapes: pad to the largest, then trim.
  std::vector<torch::Tensor> padded{torch::zeros({most, k})};
  if (local.size(0) > 0) padded[0].slice(0, 0, local.size(0)).copy_(local.view({local.size(0), k}));
  std::vector<std::vector<torch::Tensor>> all(1);
  for (int r = 0; r < world_.size; ++r) all[0].push_back(torch::zeros({most, k}));
  collective(world_.rank, "all-gather", [&] { return group_->gloo->allgather(all, padded); });
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_.size; ++r)
    parts.push_back(all[0][static_cast<size_t>(r)].slice(0, 0, static_cast<int64_t>(counts[0][static_cast<size_t>(r)].item<float>())));
  return torch::cat(parts);
}

void Communicator::broadcast(const std::vector<torch::Tensor>& tensors) {
  // One collective per kind of number (float weights, integer counters),
  // the tensors flattened into it.
  std::map<c10::ScalarType, std::vector<torch::Tensor>> kinds;
  for (const auto& t : tensors) kinds[t.scalar_type()].push_back(t);
  for (auto& [kind, group] : kinds) {
    std::vector<torch::Tensor> flat{flatten(group, kind)};
    collective(world_.rank, "broadcast", [&] { return group_->gloo->broadcast(flat); });
    unflatten_into(flat[0], group);
  }
}

void Communicator::barrier() {
  collective(world_.rank, "barrier", [&] { return group_->gloo->barrier(); });
}

std::string Communicator::share_text(const std::string& text) {
  const auto length = torch::tensor({static_cast<float>(world_.rank == 0 ? text.size() : 0)});
  broadcast({length});
  if (length.item<float>() == 0) return "";
  auto bytes = torch::zeros({static_cast<int64_t>(length.item<float>())});
  if (world_.rank == 0)
    for (size_t i = 0; i < text.size(); ++i) bytes[static_cast<int64_t>(i)] = static_cast<float>(static_cast<unsigned char>(text[i]));
  broadcast({bytes});
  std::string out;
  for (int64_t i = 0; i < bytes.size(0); ++i) out += static_cast<char>(static_cast<int>(bytes[i].item<float>()));
  return out;
}

}  // namespace fracture::train
