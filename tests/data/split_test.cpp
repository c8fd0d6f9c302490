#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>

#include "data/fixtures.h"
#include "fracture/data/split.h"
#include "fracture/util/atomic_file.h"

using namespace fracture::data;
namespace ft = fracture::testing;
namespace fs = std::filesystem;

namespace {

// 100 images plus planted duplicates: byte-identical copies and re-encodings.
Dataset dataset_with_duplicates(const ft::TempDir& dir) {
  ft::make_fracatlas(dir, 100);
  Dataset d = load_dataset(dir.path.string());
  auto add_copy = [&](int of, const std::string& name, bool reencode) {
    const Sample src = d.samples[of];
    const std::string path = std::filesystem::path(src.path).parent_path() / name;
    if (reencode) {
      cv::Mat img = cv::imread(src.path, cv::IMREAD_GRAYSCALE);
      cv::resize(img, img, {}, 1.5, 1.5, cv::INTER_CUBIC);  // resized and re-encoded
      ft::write_image(path, img, {cv::IMWRITE_JPEG_QUALITY, 70});
    } else {
      fracture::util::write_file_atomic(path, fracture::util::read_file(src.path));
    }
    Sample s = src;
    s.path = path;
    s.group = name;
    d.samples.push_back(s);
  };
  for (int i = 0; i < 10; ++i) add_copy(i * 7, "copy" + std::to_string(i) + ".jpg", false);
  for (int i = 0; i < 10; ++i) add_copy(i * 9 + 1, "reenc" + std::to_string(i) + ".jpg", true);
  return d;
}

}  // namespace

TEST(Split, DuplicatesNeverCrossSides) {
  ft::TempDir dir;
  Dataset d = dataset_with_duplicates(dir);
  const auto rep = assign_splits(d, SplitOptions{});
  EXPECT_EQ(rep.exact_pairs, 10);
  EXPECT_GE(rep.near_pairs, 10);
  std::map<std::string, std::set<std::string>> sides_of_group;
  std::map<std::string, std::string> split_of_path;
  for (const auto& s : d.samples) {
    ASSERT_TRUE(s.split == "train" || s.split == "val" || s.split == "test");
    ASSERT_TRUE(split_of_path.emplace(s.path, s.split).second) << "listed twice: " << s.path;
    sides_of_group[s.group].insert(s.split);
  }
  for (const auto& [g, sides] : sides_of_group) EXPECT_EQ(sides.size(), 1u) << g;
  // Every planted copy sits with its original.
  for (size_t i = 100; i < d.samples.size(); ++i) {
    const std::string name = std::filesystem::path(d.samples[i].path).filename();
    const int of = name.rfind("copy", 0) == 0 ? std::stoi(name.substr(4)) * 7 : std::stoi(name.substr(5)) * 9 + 1;
    EXPECT_EQ(d.samples[i].split, d.samples[of].split) << name;
    EXPECT_EQ(d.samples[i].group, d.samples[of].group) << name;
  }
}

TEST(Split, DistinctImagesAreNotMerged) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 60);
  Dataset d = load_dataset(dir.path.string());
  const auto rep = assign_splits(d, SplitOptions{});
  EXPECT_EQ(rep.exact_pairs, 0);
  EXPECT_EQ(rep.near_pairs, 0);
}

TEST(Split, StratifiedSeededAndReproducible) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 200, 48);
  Dataset a = load_dataset(dir.path.string()), b = a, c = a;
  SplitOptions o;
  o.near_duplicates = false;
  assign_splits(a, o);
  assign_splits(b, o);
  o.seed = 7;
  assign_splits(c, o);
  int differ = 0;
  std::map<std::string, std::map<int, int>> per_split;
  for (size_t i = 0; i < a.samples.size(); ++i) {
    EXPECT_EQ(a.samples[i].split, b.samples[i].split);
    differ += a.samples[i].split != c.samples[i].split;
    per_split[a.samples[i].split][a.samples[i].label]++;
  }
  EXPECT_GT(differ, 10);  // another seed, another split
  // 200 images, 41 positive: 70/15/15 within one image per stratum.
  EXPECT_NEAR(per_split["train"][0] + per_split["train"][1], 140, 4);
  EXPECT_NEAR(per_split["test"][1], 41 * 0.15, 2.5);
  EXPECT_NEAR(per_split["val"][1], 41 * 0.15, 2.5);
  const std::string table = format_split_counts(a);
  EXPECT_NE(table.find("shoulder"), std::string::npos);
  EXPECT_NE(table.find("fractured"), std::string::npos);
}

TEST(Split, UnreadableFilesStayInTheirOwnGroup) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 20);
  fracture::util::write_file_atomic(dir / "images/Non_fractured/IMG0000001.jpg", "garbage");
  Dataset d = load_dataset(dir.path.string());
  const auto rep = assign_splits(d, SplitOptions{});
  EXPECT_EQ(rep.unreadable, 1);
  ASSERT_EQ(rep.messages.size(), 1u);
  EXPECT_NE(rep.messages[0].find("IMG0000001.jpg"), std::string::npos);
  for (const auto& s : d.samples) EXPECT_FALSE(s.split.empty());
}

TEST(Split, TruncatedJpegsAreCountedAndStillSplit) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 20);
  const std::string victim = dir / "images/Non_fractured/IMG0000002.jpg";
  const std::string bytes = fracture::util::read_file(victim);
  fracture::util::write_file_atomic(victim, bytes.substr(0, bytes.size() / 2));
  Dataset d = load_dataset(dir.path.string());
  const auto rep = assign_splits(d, SplitOptions{});
  ASSERT_EQ(rep.truncated.size(), 1u);
  EXPECT_NE(rep.truncated[0].find("IMG0000002.jpg"), std::string::npos);
  EXPECT_EQ(rep.unreadable, 0);
}

// An augmented fracture-type set (as bone-break-types): an ImageFolder whose
// copies of one figure are mirrored, turned by quarter turns or brightened
// under unrelated names, or share a Roboflow original's name. Every copy
// must land in its original's group; the originals stay apart.
TEST(Split, MirroredTurnedAndRoboflowCopiesStayTogether) {
  ft::TempDir dir;
  std::vector<std::string> originals;
  for (int i = 0; i < 12; ++i) {
    const std::string type = i % 2 ? "spiral" : "oblique";
    originals.push_back(dir / ("images/" + type + "/fig" + std::to_string(i) + ".png"));
    ft::write_image(originals.back(), ft::synthetic_xray(160, 120 + 4 * i, 300 + i, i % 3 == 0));
  }
  // path of a copy -> its original
  std::map<std::string, std::string> copies;
  auto copy = [&](int of, const std::string& name, const std::function<void(cv::Mat&)>& change) {
    cv::Mat img = cv::imread(originals[of], cv::IMREAD_GRAYSCALE);
    change(img);
    const std::string path = (std::filesystem::path(originals[of]).parent_path() / name).string();
    ft::write_image(path, img, {cv::IMWRITE_JPEG_QUALITY, 85});
    copies[path] = originals[of];
  };
  copy(0, "mirrored.jpg", [](cv::Mat& m) { cv::flip(m, m, 1); });
  copy(1, "upside_down.jpg", [](cv::Mat& m) { cv::flip(m, m, 0); });
  copy(2, "quarter_turn.jpg", [](cv::Mat& m) { cv::rotate(m, m, cv::ROTATE_90_CLOCKWISE); });
  copy(3, "three_quarters.jpg", [](cv::Mat& m) { cv::rotate(m, m, cv::ROTATE_90_COUNTERCLOCKWISE); });
  copy(4, "brighter.jpg", [](cv::Mat& m) { m.convertTo(m, -1, 1.1, 25); });
  copy(5, "turned_and_mirrored.jpg", [](cv::Mat& m) { cv::rotate(m, m, cv::ROTATE_180); });
  // Roboflow names: the same original, different hashes; here the copies are
  // cropped (no pixel test would match them), as panels cut from one figure.
  const fs::path spiral = fs::path(originals[7]).parent_path();
  for (const char* hash : {"0a1b2c", "9f8e7d"}) {
    const std::string path = (spiral / ("Fig2_HTML_jpg.rf." + std::string(hash) + ".jpg")).string();
    cv::Mat img = ft::synthetic_xray(200, 200, hash[0] == '0' ? 700 : 701);
    ft::write_image(path, img);
  }
  Dataset d = load_dataset(dir.path.string());  // images/<type>/ beside nothing else: the class folders
  ASSERT_EQ(d.class_names, (std::vector<std::string>{"oblique", "spiral"}));
  const auto rep = assign_splits(d, SplitOptions{});
  EXPECT_GE(rep.turned_pairs, 4);  // upside down, the two quarter turns, and the half turn
  std::map<std::string, const Sample*> by_path;
  for (const auto& s : d.samples) by_path[s.path] = &s;
  for (const auto& [path, original] : copies) {
    ASSERT_TRUE(by_path.count(path) && by_path.count(original)) << path;
    EXPECT_EQ(by_path[path]->group, by_path[original]->group) << path;
  }
  std::set<std::string> roboflow_groups, original_groups;
  for (const auto& s : d.samples)
    if (s.path.find(".rf.") != std::string::npos) roboflow_groups.insert(s.group);
  EXPECT_EQ(roboflow_groups.size(), 1u);
  for (const auto& o : originals) original_groups.insert(by_path[o]->group);
  EXPECT_EQ(original_groups.size(), originals.size());  // distinct figures are not merged
}

// The shape of the leak issue 39 found in FracAtlas: IMG0002848 (val) and
// IMG0004206 (train), one radiograph of 373 x 454 encoded twice, one of
// them with a bright line along its bottom edge (rows 452-453: 56 and 145
// against ~17). Their 32 x 32 thumbnails from full-scale pixels correlate at
// 0.996. The detector decoded such a JPEG at 1/4 scale, 94 x 114 pixels
// whose last row reaches past the image into the encoder's padding, which
// repeats the bright edge: the line then weighed eight times its share, and
// the pair correlated at 0.97-0.975, under the 0.98 bar. Thumbnails are now
// made from 8 or more decoded pixels per thumbnail pixel.
TEST(Split, ACopyWithABrightEdgeLineStaysWithItsOriginal) {
  ft::TempDir dir;
  Dataset d;
  d.kind = "imagefolder";
  d.class_names = {"non_fractured", "fractured"};
  // Dim, as that radiograph is (its 32 x 32 thumbnail's spread ~24 grey levels):
  // the line's weight against the picture's is what matters.
  cv::Mat original, lined, colour;
  ft::synthetic_xray(373, 454, 77, true).convertTo(original, CV_8U, 0.4);
  lined = original.clone();
  lined.row(452).setTo(56);
  lined.row(453).setTo(145);
  cv::cvtColor(original, colour, cv::COLOR_GRAY2BGR);  // FracAtlas's JPEGs are colour
  ft::write_image(dir / "a.jpg", colour, {cv::IMWRITE_JPEG_QUALITY, 95});
  cv::cvtColor(lined, colour, cv::COLOR_GRAY2BGR);
  ft::write_image(dir / "b.jpg", colour, {cv::IMWRITE_JPEG_QUALITY, 88});
  for (const char* name : {"a.jpg", "b.jpg"}) d.samples.push_back({dir / name, 1, "", name});
  for (int i = 0; i < 4; ++i) {  // unrelated images of the same size stay apart
    const std::string name = "other" + std::to_string(i) + ".jpg";
    ft::write_image(dir / name, ft::synthetic_xray(373, 454, 100 + i), {cv::IMWRITE_JPEG_QUALITY, 90});
    d.samples.push_back({dir / name, 0, "", name});
  }
  const auto rep = group_duplicates(d, SplitOptions{});
  EXPECT_EQ(rep.near_pairs, 1);
  EXPECT_EQ(d.samples[0].group, d.samples[1].group);
  for (size_t i = 2; i < d.samples.size(); ++i) EXPECT_NE(d.samples[i].group, d.samples[0].group) << i;
}
