// Data from several data sets: the YOLO detection layout, sources kept apart
// in the manifest, splits made per source, Roboflow's augmented copies kept
// together.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/fixtures.h"
#include "fracture/data/boxes.h"
#include "fracture/data/split.h"
#include "fracture/util/atomic_file.h"

using namespace fracture::data;
namespace ft = fracture::testing;
namespace fs = std::filesystem;

TEST(YoloLayout, IsFoundAndLabelledByItsBoxes) {
  ft::TempDir dir;
  ft::make_yolo(dir, 6);
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.kind, "yolo");
  ASSERT_EQ(d.samples.size(), 18u);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"non_fractured", "fractured"}));
  for (const auto& s : d.samples) {
    const int original = std::stoi(fs::path(s.path).filename().string().substr(4));
    EXPECT_EQ(s.label, original % 3 == 0 ? 1 : 0) << s.path;
    EXPECT_EQ(s.group, "xray" + std::to_string(original) + "_png") << s.path;  // the Roboflow original
    EXPECT_EQ(s.source, dir.path.filename().string());
    // Box supervision finds the same label files, polygons as their bounding box.
    const auto boxes = image_boxes(s.path, "is skipped");
    ASSERT_TRUE(boxes.has_value()) << s.path;
    EXPECT_EQ(boxes->size(), s.label == 1 ? 1u : 0u) << s.path;
  }
  const auto polygon = read_yolo_boxes(dir / "labels/xray0_png.rf.c30.txt");
  ASSERT_EQ(polygon.size(), 1u);
  EXPECT_FLOAT_EQ(polygon[0].cx, 0.3f);
  EXPECT_FLOAT_EQ(polygon[0].cy, 0.4f);
  EXPECT_FLOAT_EQ(polygon[0].w, 0.2f);
  EXPECT_FLOAT_EQ(polygon[0].h, 0.2f);
}

TEST(YoloLayout, NamesMissingAndBadLabelFiles) {
  ft::TempDir dir;
  ft::make_yolo(dir, 3);
  fs::remove(dir / "labels/xray1_png.rf.a11.txt");                            // no file: background, as YOLO
  fracture::util::write_file_atomic(dir / "labels/xray2_png.rf.b22.txt", "0 0.5 oops\n");  // unknown label: skipped
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.samples.size(), 8u);
  ASSERT_EQ(d.warnings.size(), 2u);
  std::string all = d.warnings[0] + "\n" + d.warnings[1];
  EXPECT_NE(all.find("xray2_png.rf.b22.txt:1"), std::string::npos) << all;
  EXPECT_NE(all.find("xray1_png.rf.a11.jpg"), std::string::npos) << all;
  EXPECT_NE(all.find("1 images have no label file"), std::string::npos) << all;
  for (const auto& s : d.samples)
    if (s.path.find("xray1_png.rf.a11") != std::string::npos) EXPECT_EQ(s.label, 0);
}

TEST(YoloLayout, PolygonLinesAreCheckedLikeBoxes) {
  for (const char* bad : {"0 0.1 0.1 0.2 0.2\n0 0.1 0.1 0.2 0.2 0.3\n",  // odd coordinates: line 2
                          "0 0.1 0.1\n",                                    // too short
                          "0 0.1 0.1 0.2 0.2 0.3 1.5\n",                    // a point outside
                          "0 0.1 0.1 0.1 0.1 0.1 0.1\n"}) {                 // no area
    try {
      parse_yolo_boxes(bad, "poly.txt");
      FAIL() << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("poly.txt:"), std::string::npos) << e.what();
    }
  }
  const auto b = parse_yolo_boxes("3 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n", "ok.txt");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_FLOAT_EQ(b[0].w, 0.4f);
  EXPECT_FLOAT_EQ(b[0].h, 0.4f);
}

TEST(Sources, EachIsSplitOnItsOwnAndNamedInTheManifest) {
  ft::TempDir root;
  const fs::path atlas = root / "fracatlas", yolo = root / "bone-fracture-yolo";
  fs::create_directories(atlas);
  fs::create_directories(yolo);
  ft::make_fracatlas(atlas, 60);
  ft::make_yolo(yolo, 20);

  Dataset alone = load_dataset(atlas.string());
  Dataset both = load_datasets({atlas.string(), yolo.string()});
  EXPECT_EQ(both.kind, "combined");
  EXPECT_EQ(both.sources(), (std::vector<std::string>{"fracatlas", "bone-fracture-yolo"}));
  assign_splits(alone, SplitOptions{});
  const auto rep = assign_splits(both, SplitOptions{});
  EXPECT_EQ(rep.cross_source_groups, 0);

  // A source's split does not depend on what it is combined with.
  std::map<std::string, std::string> split_alone;
  for (const auto& s : alone.samples) split_alone[s.path] = s.split;
  std::map<std::string, std::set<std::string>> sides;
  std::map<std::string, std::map<std::string, int>> per_source;
  for (const auto& s : both.samples) {
    if (s.source == "fracatlas") EXPECT_EQ(s.split, split_alone.at(s.path)) << s.path;
    sides[s.group].insert(s.split);
    per_source[s.source][s.split]++;
  }
  // Roboflow's copies of one original stay on one side; each source has all three splits.
  for (const auto& [group, in] : sides) EXPECT_EQ(in.size(), 1u) << group;
  for (const auto& [source, n] : per_source) EXPECT_EQ(n.size(), 3u) << source;

  // The manifest keeps the sources; a combined manifest reads back as it was.
  write_manifest(root / "split.csv", both);
  const Dataset back = load_dataset(root / "split.csv");
  ASSERT_EQ(back.samples.size(), both.samples.size());
  for (size_t i = 0; i < back.samples.size(); ++i) {
    EXPECT_EQ(back.samples[i].source, both.samples[i].source);
    EXPECT_EQ(back.samples[i].split, both.samples[i].split);
  }
  EXPECT_NE(format_split_counts(back).find("source bone-fracture-yolo"), std::string::npos);
}

TEST(Sources, ClassesMustAgree) {
  ft::TempDir root;
  fs::create_directories(root / "a/fractured");
  fs::create_directories(root / "a/not fractured");
  fs::create_directories(root / "b/x");
  fs::create_directories(root / "b/y");
  fs::create_directories(root / "b/z");
  for (const char* f : {"a/fractured/1.png", "a/not fractured/2.png", "b/x/1.png", "b/y/2.png", "b/z/3.png"})
    ft::write_image(root / f, ft::synthetic_xray(32, 32, 1));
  ft::make_yolo(root / "c", 3);
  // Two classes each: matched negative to negative, with a warning naming both.
  const Dataset ac = load_datasets({root / "a", root / "c"});
  EXPECT_EQ(ac.class_names, (std::vector<std::string>{"not fractured", "fractured"}));
  ASSERT_FALSE(ac.warnings.empty());
  EXPECT_NE(ac.warnings.back().find("non_fractured / fractured taken as not fractured / fractured"), std::string::npos)
      << ac.warnings.back();
  // Three classes against two: refused, naming the data set.
  try {
    load_datasets({root / "a", root / "b"});
    FAIL() << "mixed class counts accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/b: classes (x, y, z) differ"), std::string::npos) << e.what();
  }
}
