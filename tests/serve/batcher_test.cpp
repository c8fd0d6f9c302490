// The dynamic batcher, with a scorer the test controls: images from several
// submitters share a pass, the queue bound is all-or-nothing, a deadline
// expires an image unscored, and destruction scores what is queued.
#include <gtest/gtest.h>

#include <atomic>

#include "fracture/serve/base64.h"
#include "fracture/serve/batcher.h"

using namespace fracture;
using namespace std::chrono_literals;

namespace {

PreparedImage image(const std::string& name) { return {name, torch::zeros({3, 4, 4})}; }

// Scores each image as its name's length, after waiting for `gate` to open.
struct Scorer {
  std::vector<size_t> batch_sizes;
  std::mutex mu;
  std::condition_variable cv;
  bool open = true;
  std::vector<Prediction> operator()(const std::vector<PreparedImage>& images) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
    batch_sizes.push_back(images.size());
    std::vector<Prediction> out;
    for (const auto& i : images) {
      Prediction p;
      p.path = i.name;
      p.probability = static_cast<double>(i.name.size());
      out.push_back(p);
    }
    return out;
  }
  void set_open(bool value) {
    { std::lock_guard<std::mutex> lock(mu); open = value; }
    cv.notify_all();
  }
};

}  // namespace

TEST(Batcher, ConcurrentImagesShareAPassAndEachGetsItsOwnAnswer) {
  Scorer scorer;
  serve::Batcher b([&](const auto& images) { return scorer(images); }, {4, 200ms, 16});
  const auto deadline = serve::Batcher::Clock::now() + 10s;
  std::vector<std::future<Prediction>> futures;
  for (const char* name : {"a", "bb", "ccc"}) {
    auto f = b.submit({image(name)}, deadline);
    ASSERT_TRUE(f.has_value());
    futures.push_back(std::move(f->front()));
  }
  auto more = b.submit({image("dddd"), image("eeeee")}, deadline);
  ASSERT_TRUE(more.has_value());
  for (auto& f : *more) futures.push_back(std::move(f));
  for (size_t k = 0; k < futures.size(); ++k) EXPECT_EQ(futures[k].get().probability, static_cast<double>(k + 1));
  ASSERT_GE(scorer.batch_sizes.size(), 2u);
  EXPECT_EQ(scorer.batch_sizes[0], 4u);  // filled to max_batch before the wait ran out
}

TEST(Batcher, AFullQueueRefusesARequestWhole) {
  Scorer scorer;
  scorer.set_open(false);  // the first batch blocks in the scorer
  serve::Batcher b([&](const auto& images) { return scorer(images); }, {1, 0ms, 2});
  const auto deadline = serve::Batcher::Clock::now() + 10s;
  auto first = b.submit({image("x")}, deadline);  // taken by the batcher, blocked in the scorer
  ASSERT_TRUE(first);
  for (int i = 0; i < 200 && b.depth() > 0; ++i) std::this_thread::sleep_for(5ms);
  auto second = b.submit({image("y")}, deadline);
  ASSERT_TRUE(second);
  EXPECT_FALSE(b.submit({image("z1"), image("z2")}, deadline).has_value());  // 1 + 2 > 2: none queued
  EXPECT_EQ(b.depth(), 1u);
  EXPECT_TRUE(b.submit({image("w")}, deadline).has_value());  // 1 + 1 fits
  scorer.set_open(true);
  EXPECT_EQ(first->front().get().path, "x");
  EXPECT_EQ(second->front().get().path, "y");
}

TEST(Batcher, AnImagePastItsDeadlineIsNotScored) {
  Scorer scorer;
  serve::Batcher b([&](const auto& images) { return scorer(images); }, {8, 100ms, 16});
  auto late = b.submit({image("late")}, serve::Batcher::Clock::now() + 10ms);
  ASSERT_TRUE(late);
  EXPECT_THROW(late->front().get(), serve::DeadlineExceeded);
  EXPECT_TRUE(scorer.batch_sizes.empty());
}

TEST(Batcher, ScorerErrorsReachEveryWaiterAndStoppingScoresWhatIsQueued) {
  std::atomic<int> calls{0};
  std::vector<std::future<Prediction>> futures;
  {
    serve::Batcher b(
        [&](const std::vector<PreparedImage>& images) -> std::vector<Prediction> {
          if (calls++ == 0) throw std::runtime_error("network failed");
          return std::vector<Prediction>(images.size());
        },
        {2, 50ms, 16});
    auto failing = b.submit({image("a"), image("b")}, serve::Batcher::Clock::now() + 10s);
    for (auto& f : *failing) EXPECT_THROW(f.get(), std::runtime_error);
    auto queued = b.submit({image("c"), image("d"), image("e")}, serve::Batcher::Clock::now() + 10s);
    for (auto& f : *queued) futures.push_back(std::move(f));
  }  // destroyed at once: what was queued is still scored
  for (auto& f : futures) EXPECT_NO_THROW(f.get());
}

TEST(Base64, RoundTripsEveryLengthAndRefusesGarbage) {
  std::string bytes;
  for (int n = 0; n < 70; ++n) {
    const auto text = serve::base64_encode(bytes);
    EXPECT_EQ(text.size() % 4, 0u);
    EXPECT_EQ(serve::base64_decode(text), bytes) << n;
    bytes += static_cast<char>(n * 37 + 11);
  }
  EXPECT_EQ(serve::base64_encode("Man"), "TWFu");
  EXPECT_EQ(serve::base64_encode("Ma"), "TWE=");
  EXPECT_FALSE(serve::base64_decode("TWE").has_value());
  EXPECT_FALSE(serve::base64_decode("T!Fu").has_value());
  EXPECT_FALSE(serve::base64_decode("TW=u").has_value());
}
