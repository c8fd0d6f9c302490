// The on-disk feature cache (--cache disk) is keyed by everything the
// features depend on: a changed split, seed or image size must not reuse a
// stale cache, and an unchanged run must reuse it.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "fracture/data/dataset.h"
#include "fracture/train/trainer.h"
#include "train/fixtures.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

std::set<std::string> cache_files(const std::string& run) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(run))
    if (e.path().filename().string().rfind("feature_cache_", 0) == 0) out.insert(e.path().filename().string());
  return out;
}

}  // namespace

TEST(FeatureCache, DiskKeyFollowsTheDataTheSeedAndTheSize) {
  if (!ft::have_lite0()) GTEST_SKIP() << "needs Lite0's ImageNet weights (scripts/setup.sh)";
  ft::TempDir dir;
  ft::make_square_dataset(dir, 4, 2, 64);
  data::Dataset d = data::load_dataset(dir.path.string());
  train::TrainOptions o;
  o.out_dir = dir / "run";
  o.image_size = 64;
  o.epochs = 1;
  o.cache = train::FeatureCache::Disk;
  o.workers = 1;
  o.overwrite = true;  // each run below replaces the one before, keeping the cache files
  train::train(d, o);
  const auto first = cache_files(o.out_dir);
  ASSERT_EQ(first.size(), 1u);
  train::train(d, o);  // the same run: reused
  EXPECT_EQ(cache_files(o.out_dir), first);
  o.seed = 43;
  train::train(d, o);
  EXPECT_EQ(cache_files(o.out_dir).size(), 2u) << "another seed";
  o.image_size = 72;
  train::train(d, o);
  EXPECT_EQ(cache_files(o.out_dir).size(), 3u) << "another size";
  for (auto& s : d.samples)  // one validation image moves to training: another split
    if (s.split == "val") {
      s.split = "train";
      break;
    }
  train::train(d, o);
  EXPECT_EQ(cache_files(o.out_dir).size(), 4u) << "another split";
  o.cache_views = 2;
  train::train(d, o);
  EXPECT_EQ(cache_files(o.out_dir).size(), 5u) << "augmented views";
  o.augment_kind = train::AugmentKind::Intensity;
  train::train(d, o);
  EXPECT_EQ(cache_files(o.out_dir).size(), 6u) << "views augmented another way";
}
