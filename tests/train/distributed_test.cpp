// Data-parallel training on loopback (train/distributed.h): two ranks, each
// with half of every batch, take the steps one process takes on the whole
// batch; a rank that dies ends the job with an error, never a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "cli/run_cli.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/distributed.h"
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include "train/fixtures.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

// ResNet-18 has no dropout, so two runs differ only where the ranks do.
std::string recipe(const std::string& data, const std::string& out, const std::string& extra, int batch = 16) {
  return "train --data " + data + " --out " + out +
         " --model resnet18 --from-scratch --size 64 --epochs 2 --batch-size " + std::to_string(batch) +
         " --mixup 0 --average 0 --seed 3 --workers 1 " + extra;
}

// The largest difference between two model files' tensors.
double max_difference(const std::string& a, const std::string& b) {
  const auto x = models::load_safetensors(a).tensors, y = models::load_safetensors(b).tensors;
  EXPECT_EQ(x.size(), y.size());
  double worst = 0;
  for (const auto& [name, t] : x)
    worst = std::max(worst, (t.to(torch::kDouble) - y.at(name).to(torch::kDouble)).abs().max().item<double>());
  return worst;
}

// The pids of processes whose command line holds `needle` and whose
// environment sets RANK=<rank>.
std::vector<pid_t> rank_processes(const std::string& needle, int rank) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(e.path() / "cmdline"), env(e.path() / "environ");
    const std::string c((std::istreambuf_iterator<char>(cmd)), {}), v((std::istreambuf_iterator<char>(env)), {});
    const std::string var = "RANK=" + std::to_string(rank) + '\0';  // not LOCAL_RANK=...
    if (c.find(needle) != std::string::npos && (v.rfind(var, 0) == 0 || v.find('\0' + var) != std::string::npos))
      out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

}  // namespace

TEST(Distributed, WorldComesFromTorchrunsVariables) {
  ::unsetenv("WORLD_SIZE");
  EXPECT_EQ(train::world_from_environment().size, 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "1", 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", "29511", 1);
  const auto w = train::world_from_environment();
  EXPECT_EQ(w.size, 2);
  EXPECT_EQ(w.rank, 1);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.master_port, 29511);
  EXPECT_TRUE(w.agent_store_prefix.empty()) << "outside torchrun rank 0 hosts the store";
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", "2", 1);
  EXPECT_EQ(train::world_from_environment().agent_store_prefix, "/worker/attempt_2");
  ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
  ::unsetenv("TORCHELASTIC_RESTART_COUNT");
  ::setenv("RANK", "2", 1);
  EXPECT_THROW(train::world_from_environment(), std::invalid_argument) << "a rank past the world";
  ::setenv("RANK", "one", 1);
  EXPECT_THROW(train::world_from_environment(), std::invalid_argument);
  ::setenv("RANK", "1", 1);
  ::unsetenv("MASTER_PORT");
  try {
    train::world_from_environment();
    ADD_FAILURE() << "no MASTER_PORT accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_PORT"), std::string::npos);
  }
  for (const char* v : {"WORLD_SIZE", "RANK", "MASTER_ADDR"}) ::unsetenv(v);
}

// Cached frozen features (the default path) and streamed images (--cache
// off, augmented): with the backbone frozen nothing but the batch's split
// differs, so the weights agree to float rounding (measured: 4e-9, 1e-8).
// Batches of 3 over 3 ranks leave some rank's part empty at some steps.
TEST(Distributed, RanksOfPartsOfABatchTakeTheStepsOfOneProcess) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 12, 6, 64);
  const std::string data = dir.path.string();
  struct Case {
    std::string path;
    int ranks, batch;
  };
  for (const Case c : {Case{"--freeze head", 2, 16}, Case{"--freeze head --cache off", 2, 16},
                       Case{"--freeze head --cache off", 3, 3}}) {
    SCOPED_TRACE(c.path + ", " + std::to_string(c.ranks) + " ranks");
    const auto one = ft::run_cli(recipe(data, dir / "one", c.path + " --threads 1 --overwrite", c.batch));
    ASSERT_EQ(one.code, 0) << one.err;
    const auto two = ft::run_cli(
        recipe(data, dir / "two", c.path + " --nproc " + std::to_string(c.ranks) + " --overwrite", c.batch));
    ASSERT_EQ(two.code, 0) << two.err;
    EXPECT_NE(two.err.find("ranks 0-" + std::to_string(c.ranks - 1) + " started"), std::string::npos) << two.err;
    EXPECT_LT(max_difference(dir / "one/best.safetensors", dir / "two/best.safetensors"), 1e-6);
    const auto m1 = train::load_model(dir / "one/best.safetensors"), m2 = train::load_model(dir / "two/best.safetensors");
    EXPECT_NEAR(m1.info.extra.at("val_roc_auc").get<double>(), m2.info.extra.at("val_roc_auc").get<double>(), 1e-6)
        << "validation is sharded and gathered before the AUC";
    EXPECT_NEAR(m1.info.threshold, m2.info.threshold, 1e-5);
    EXPECT_TRUE(two.out.empty()) << "stdout carries results only: " << two.out;
  }
}

// Trainable BatchNorm sees each rank's half batch, so the runs differ (as
// PyTorch's DDP without SyncBatchNorm); the run must still go through,
// resume, and give an unbroken run's model.
// torchrun's agent hosts the store at MASTER_ADDR:MASTER_PORT itself and
// says so with TORCHELASTIC_USE_AGENT_STORE=True (single and multi-node
// launches alike); a rank 0 that tried to host it too could not bind the port.
// Here the test plays the agent: it hosts the store, and two ranks started
// with torchrun's variables join it as clients and train as `--nproc 2` does.
TEST(Distributed, UnderTorchrunTheRanksJoinTheAgentsStore) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 12, 6, 64);
  const std::string data = dir.path.string();
  c10d::TCPStoreOptions agent;
  agent.port = 0;  // any free port
  agent.isServer = true;
  agent.waitWorkers = false;
  c10d::TCPStore store("127.0.0.1", agent);
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(store.getPort()) +
                          " TORCHELASTIC_USE_AGENT_STORE=True TORCHELASTIC_RESTART_COUNT=0";
  auto rank = [&](int r) {
    return std::async(std::launch::async, [&, r] {
      return ft::run_cli(recipe(data, dir / "agent", "--freeze head --threads 1 --dist-timeout 30"),
                         env + " RANK=" + std::to_string(r) + " LOCAL_RANK=" + std::to_string(r));
    });
  };
  auto r0 = rank(0), r1 = rank(1);
  const auto a = r0.get(), b = r1.get();
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  const auto one = ft::run_cli(recipe(data, dir / "one", "--freeze head --threads 1"));
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_LT(max_difference(dir / "one/best.safetensors", dir / "agent/best.safetensors"), 1e-6);
}

TEST(Distributed, TrainableStagesResumeToTheUnbrokenRun) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 12, 6, 64);
  const std::string data = dir.path.string();
  const auto whole = ft::run_cli(recipe(data, dir / "whole", "--freeze last:1 --nproc 2"));
  ASSERT_EQ(whole.code, 0) << whole.err;
  const auto part = ft::run_cli(recipe(data, dir / "parts", "--freeze last:1 --nproc 2 --stop-after 1"));
  ASSERT_EQ(part.code, 0) << part.err;
  const auto rest = ft::run_cli(recipe(data, dir / "parts", "--freeze last:1 --nproc 2 --resume"));
  ASSERT_EQ(rest.code, 0) << rest.err;
  EXPECT_EQ(max_difference(dir / "whole/best.safetensors", dir / "parts/best.safetensors"), 0.0);
}

TEST(Distributed, AKilledRankEndsTheJobWithAnErrorNotAHang) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 12, 6, 64);
  const std::string out = dir / "killed";
  const auto start = std::chrono::steady_clock::now();
  auto job = std::async(std::launch::async, [&] {
    return ft::run_cli("train --data " + dir.path.string() + " --out " + out +
                       " --model resnet18 --from-scratch --size 64 --epochs 1000 --batch-size 4 --freeze head"
                       " --workers 1 --nproc 2 --dist-timeout 30");
  });
  // Once an epoch is in, rank 1 is training: kill it as the OOM killer would.
  while (!std::filesystem::exists(out + "/metrics.jsonl") && std::chrono::steady_clock::now() - start < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto victims = rank_processes(out, 1);
  ASSERT_EQ(victims.size(), 1u);
  ::kill(victims[0], SIGKILL);
  ASSERT_EQ(job.wait_for(std::chrono::seconds(90)), std::future_status::ready) << "the job hangs";
  const auto r = job.get();
  EXPECT_NE(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("rank 1 of 2 exited with code 137"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("failed - another rank has probably stopped"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(150));
  EXPECT_TRUE(rank_processes(out, 0).empty()) << "rank 0 is left running";
}
