#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "fracture/util/runtime.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  spdlog::set_level(spdlog::level::warn);
  fracture::util::configure_runtime();
  torch::manual_seed(0);
  return RUN_ALL_TESTS();
}
