#include "fracture/train/feature_augment.h"

#include <gtest/gtest.h>

namespace fracture::train {
namespace {

torch::Tensor ramp_maps(int64_t n, int64_t c, int64_t h, int64_t w) {
  return torch::arange(n * c * h * w, torch::kFloat).view({n, c, h, w});
}

TEST(FeatureAugment, NoFlipNoShiftIsIdentity) {
  auto x = ramp_maps(4, 3, 5, 6);
  auto y = augment_feature_maps(x, {0.0, 0});
  EXPECT_TRUE(torch::equal(x, y));
}

TEST(FeatureAugment, AlwaysFlipMirrorsWidth) {
  auto x = ramp_maps(4, 3, 5, 6);
  auto y = augment_feature_maps(x, {1.0, 0});
  EXPECT_TRUE(torch::equal(y, x.flip({3})));
}

TEST(FeatureAugment, ShiftsAreWithinRangeAndRepeatEdges) {
  // One map per sample; each output must be the input shifted by some
  // (dy, dx) in [-1, 1]^2 with edge cells repeated, and not all may be zero shifts.
  torch::manual_seed(7);
  auto x = ramp_maps(32, 2, 5, 6);
  auto y = augment_feature_maps(x, {0.0, 1});
  namespace F = torch::nn::functional;
  auto padded = F::pad(x, F::PadFuncOptions({1, 1, 1, 1}).mode(torch::kReplicate));
  int moved = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    bool matched = false;
    for (int dy = 0; dy <= 2 && !matched; ++dy)
      for (int dx = 0; dx <= 2 && !matched; ++dx)
        if (torch::equal(y[i], padded[i].slice(1, dy, dy + 5).slice(2, dx, dx + 6))) {
          matched = true;
          moved += dy != 1 || dx != 1;
        }
    EXPECT_TRUE(matched) << "sample " << i;
  }
  EXPECT_GT(moved, 16);  // 8 of 9 shifts move the map
}

TEST(FeatureAugment, SeededAndLayoutPreserving) {
  auto x = ramp_maps(8, 4, 6, 6).contiguous(torch::MemoryFormat::ChannelsLast);
  torch::manual_seed(3);
  auto a = augment_feature_maps(x);
  torch::manual_seed(3);
  auto b = augment_feature_maps(x);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_TRUE(a.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_FALSE(torch::equal(a, x));
}

TEST(FeatureAugment, RejectsNonMaps) {
  EXPECT_THROW(augment_feature_maps(torch::zeros({4, 8})), std::invalid_argument);
}

}  // namespace
}  // namespace fracture::train
