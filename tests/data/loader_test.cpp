#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "data/fixtures.h"
#include "fracture/data/loader.h"
#include "fracture/util/atomic_file.h"

using namespace fracture::data;
namespace ft = fracture::testing;

namespace {

std::vector<Sample> samples(const ft::TempDir& dir, int n) {
  ft::make_fracatlas(dir, n, 64);
  return load_dataset(dir.path.string()).samples;
}

std::vector<size_t> epoch_order(DataLoader& loader, int epoch, std::vector<torch::Tensor>* images = nullptr) {
  loader.start_epoch(epoch);
  std::vector<size_t> order;
  while (auto b = loader.next()) {
    EXPECT_EQ(b->images.size(0), static_cast<int64_t>(b->indices.size()));
    EXPECT_EQ(b->labels.size(0), b->images.size(0));
    order.insert(order.end(), b->indices.begin(), b->indices.end());
    if (images) images->push_back(b->images);
  }
  return order;
}

}  // namespace

TEST(Loader, DeliversEverySampleInOrderWithShapes) {
  ft::TempDir dir;
  LoaderOptions o;
  o.batch_size = 4;
  o.preprocess.size = 32;
  DataLoader loader(samples(dir, 10), o);
  loader.start_epoch(0);
  EXPECT_EQ(loader.num_batches(), 3u);
  auto b = loader.next();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->images.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_EQ(b->labels[0].item<int64_t>(), 1);  // IMG0000000 is fractured
  std::vector<size_t> all = b->indices;
  while (auto n = loader.next()) all.insert(all.end(), n->indices.begin(), n->indices.end());
  EXPECT_EQ(all, (std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(Loader, ShuffleAndAugmentAreReproducibleAcrossWorkerCounts) {
  ft::TempDir dir;
  auto s = samples(dir, 24);
  LoaderOptions o;
  o.batch_size = 5;
  o.shuffle = true;
  o.seed = 3;
  o.preprocess.size = 32;
  o.augment.enabled = true;
  o.workers = 3;
  DataLoader a(s, o);
  o.workers = 1;
  DataLoader b(s, o);
  std::vector<torch::Tensor> ia, ib;
  const auto oa = epoch_order(a, 1, &ia), ob = epoch_order(b, 1, &ib);
  EXPECT_EQ(oa, ob);
  ASSERT_EQ(ia.size(), ib.size());
  for (size_t i = 0; i < ia.size(); ++i) EXPECT_TRUE(torch::equal(ia[i], ib[i]));
  EXPECT_NE(epoch_order(a, 2), oa);  // a new epoch, a new order
}

TEST(Loader, UnreadableFilesAreSkippedAndReportedOnce) {
  ft::TempDir dir;
  auto s = samples(dir, 8);
  fracture::util::write_file_atomic(s[2].path, "not an image");
  LoaderOptions o;
  o.batch_size = 3;
  o.preprocess.size = 32;
  DataLoader loader(s, o);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const auto order = epoch_order(loader, epoch);
    EXPECT_EQ(order.size(), 7u);
    EXPECT_EQ(std::count(order.begin(), order.end(), 2u), 0);
  }
  const auto st = loader.stats();
  EXPECT_EQ(st.failed, 1u);
  ASSERT_EQ(st.failures.size(), 1u);
  EXPECT_NE(st.failures[0].find("IMG0000002.jpg"), std::string::npos);
}

TEST(Loader, CacheSkipsDecodingInLaterEpochs) {
  ft::TempDir dir;
  LoaderOptions o;
  o.preprocess.size = 32;
  o.cache = true;
  DataLoader loader(samples(dir, 6), o);
  epoch_order(loader, 0);
  epoch_order(loader, 1);
  EXPECT_EQ(loader.stats().decoded, 6u);
  EXPECT_EQ(loader.stats().cache_hits, 6u);
}

TEST(Loader, WeightedSamplingBalancesClasses) {
  ft::TempDir dir;
  auto s = samples(dir, 50);  // 11 positive of 50
  std::vector<double> w;
  int pos = 0;
  for (const auto& x : s) pos += x.label;
  for (const auto& x : s) w.push_back(x.label ? 1.0 / pos : 1.0 / (50 - pos));
  LoaderOptions o;
  o.preprocess.size = 16;
  o.batch_size = 50;
  o.sample_weights = w;
  DataLoader loader(s, o);
  int drawn_pos = 0, total = 0;
  for (int e = 0; e < 8; ++e)
    for (size_t i : epoch_order(loader, e)) drawn_pos += s[i].label, ++total;
  EXPECT_NEAR(static_cast<double>(drawn_pos) / total, 0.5, 0.08);
}

TEST(Loader, StopsCleanlyMidEpoch) {
  ft::TempDir dir;
  LoaderOptions o;
  o.batch_size = 2;
  o.preprocess.size = 16;
  o.prefetch_batches = 1;
  auto loader = std::make_unique<DataLoader>(samples(dir, 12), o);
  loader->start_epoch(0);
  ASSERT_TRUE(loader->next());
  loader.reset();  // destructor joins the workers while batches are pending
  SUCCEED();
}

// Data-parallel ranks: each batch (the same on every rank) split by sample
// index, every image as the whole batch has it (augmentation is seeded per
// sample), a rank's part possibly empty but still delivered.
TEST(Loader, ShardsSplitEveryBatchByIndex) {
  ft::TempDir dir;
  auto s = samples(dir, 13);
  LoaderOptions o;
  o.batch_size = 3;
  o.shuffle = true;
  o.seed = 5;
  o.preprocess.size = 32;
  o.augment.enabled = true;
  DataLoader whole(s, o);
  std::vector<std::unique_ptr<DataLoader>> shards;
  for (int r = 0; r < 3; ++r) {
    o.shard_rank = r;
    o.shard_count = 3;
    shards.push_back(std::make_unique<DataLoader>(s, o));
    EXPECT_EQ(shards.back()->batches_per_epoch(), whole.batches_per_epoch());
  }
  whole.start_epoch(2);
  for (auto& l : shards) l->start_epoch(2);
  int empty_parts = 0;
  while (auto b = whole.next()) {
    std::map<size_t, torch::Tensor> image_of;
    for (size_t k = 0; k < b->indices.size(); ++k) image_of[b->indices[k]] = b->images[static_cast<int64_t>(k)];
    size_t covered = 0;
    for (int r = 0; r < 3; ++r) {
      auto part = shards[static_cast<size_t>(r)]->next();
      ASSERT_TRUE(part) << "every rank has as many batches";
      empty_parts += part->empty();

      covered += part->indices.size();
      for (size_t k = 0; k < part->indices.size(); ++k) {
        EXPECT_EQ(part->indices[k] % 3, static_cast<size_t>(r));
        ASSERT_TRUE(image_of.count(part->indices[k]));
        EXPECT_TRUE(torch::equal(part->images[static_cast<int64_t>(k)], image_of.at(part->indices[k])));
      }
    }
    EXPECT_EQ(covered, b->indices.size());
  }
  for (auto& l : shards) EXPECT_FALSE(l->next());
  EXPECT_GT(empty_parts, 0) << "13 samples in batches of 3 over 3 ranks leave some part empty";
  o.shard_rank = 3;
  EXPECT_THROW(DataLoader(s, o), std::invalid_argument);
}
