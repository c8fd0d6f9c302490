// Fracture boxes: FracAtlas's YOLO files found beside an image, parsed, and
// turned into a feature-map mask.
#include <gtest/gtest.h>

#include <fstream>

#include "fracture/data/boxes.h"
#include "helpers.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST(Boxes, FindsTheFracAtlasLabelFile) {
  ft::TempDir dir;
  ft::write_image(dir / "images/Fractured/IMG0000007.jpg", ft::synthetic_xray(64, 80, 7, true));
  ft::write_image(dir / "images/Non_fractured/IMG0000008.jpg", ft::synthetic_xray(64, 80, 8));
  write_text(dir / "Annotations/YOLO/IMG0000007.txt", "0 0.5 0.5 0.1 0.2\n");
  EXPECT_EQ(data::box_file_for(dir / "images/Fractured/IMG0000007.jpg"), dir / "Annotations/YOLO/IMG0000007.txt");
  EXPECT_EQ(data::box_file_for(dir / "images/Non_fractured/IMG0000008.jpg"), "");  // no file: unknown
  EXPECT_EQ(data::box_file_for(dir / "elsewhere/IMG0000007.jpg"), "");             // not the layout
  // Found and read in one step: no file gives no boxes, a bad file none at all.
  EXPECT_EQ(data::image_boxes(dir / "images/Fractured/IMG0000007.jpg", "is skipped")->size(), 1u);
  EXPECT_TRUE(data::image_boxes(dir / "images/Non_fractured/IMG0000008.jpg", "is skipped")->empty());
  write_text(dir / "Annotations/YOLO/IMG0000008.txt", "0 oops\n");
  EXPECT_FALSE(data::image_boxes(dir / "images/Non_fractured/IMG0000008.jpg", "is skipped").has_value());
}

TEST(Boxes, ParsesYoloLinesAndNamesTheBadOne) {
  ft::TempDir dir;
  write_text(dir / "a.txt", "0 0.5985 0.3482 0.1186 0.0512\r\n\n0 0.2 0.8 0.1 0.1\n");
  const auto boxes = data::read_yolo_boxes(dir / "a.txt");
  ASSERT_EQ(boxes.size(), 2u);
  EXPECT_FLOAT_EQ(boxes[0].cx, 0.5985f);
  EXPECT_FLOAT_EQ(boxes[0].h, 0.0512f);
  EXPECT_FLOAT_EQ(boxes[1].cy, 0.8f);
  write_text(dir / "empty.txt", "");
  EXPECT_TRUE(data::read_yolo_boxes(dir / "empty.txt").empty());

  for (const auto& [name, text] : {std::pair{"short.txt", "0 0.5 0.5\n"}, std::pair{"words.txt", "0 a b c d\n"},
                                   std::pair{"long.txt", "0 0.5 0.5 0.1 0.1 9\n"},
                                   std::pair{"outside.txt", "0 0.5 0.5 0.1 0.1\n0 0.98 0.5 0.1 0.1\n"}}) {
    write_text(dir / name, text);
    try {
      data::read_yolo_boxes(dir / name);
      FAIL() << name << " parsed";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(name), std::string::npos) << what;
      EXPECT_NE(what.find(std::string(name) == "outside.txt" ? ":2:" : ":1:"), std::string::npos) << what;
    }
  }
  EXPECT_THROW(data::read_yolo_boxes(dir / "missing.txt"), std::runtime_error);
}

TEST(Boxes, MaskMarksTheCellsABoxOverlaps) {
  // x from 0.30 to 0.55 on a 4-wide grid: cells 1 and 2; y from 0.05 to 0.15: cell 0.
  auto m = data::box_mask({{0.425f, 0.1f, 0.25f, 0.1f}}, 4, 4);
  auto expected = torch::zeros({4, 4});
  expected[0][1] = 1;
  expected[0][2] = 1;
  EXPECT_TRUE(torch::equal(m, expected)) << m;
  // A box far smaller than a cell still marks the cell it lies in; two boxes add up.
  m = data::box_mask({{0.9f, 0.9f, 0.001f, 0.001f}, {0.1f, 0.6f, 0.02f, 0.02f}}, 3, 5);
  EXPECT_EQ(m.sum().item<float>(), 2);
  EXPECT_EQ(m[2][4].item<float>(), 1);
  EXPECT_EQ(m[1][0].item<float>(), 1);
  // A box covering the image marks everything; no box, nothing.
  EXPECT_EQ(data::box_mask({{0.5f, 0.5f, 1.f, 1.f}}, 3, 3).sum().item<float>(), 9);
  EXPECT_EQ(data::box_mask({}, 3, 3).sum().item<float>(), 0);
}
