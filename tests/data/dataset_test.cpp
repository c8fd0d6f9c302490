#include <gtest/gtest.h>

#include <fstream>

#include "data/fixtures.h"
#include "fracture/data/dataset.h"

using namespace fracture::data;
namespace ft = fracture::testing;

TEST(Dataset, ReadsFracAtlasLayoutFolderWinsOverCsv) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 20);
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.kind, "fracatlas");
  ASSERT_EQ(d.samples.size(), 20u);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"non_fractured", "fractured"}));
  int positives = 0;
  for (const auto& s : d.samples) positives += s.label;
  EXPECT_EQ(positives, 5);  // 0,5,10,15 and the disputed 3
  const auto& s3 = d.samples[3];
  EXPECT_EQ(s3.label, 1);
  EXPECT_EQ(s3.region, "shoulder");
  EXPECT_EQ(d.samples[7].hardware, 1);
  ASSERT_EQ(d.warnings.size(), 1u);
  EXPECT_NE(d.warnings[0].find("IMG0000003.jpg"), std::string::npos);
}

TEST(Dataset, FracAtlasMissingFilesAreWarnedAndSkipped) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 10);
  std::filesystem::remove(dir / "images/Non_fractured/IMG0000001.jpg");
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.samples.size(), 9u);
  bool named = false;
  for (const auto& w : d.warnings) named = named || w.find("IMG0000001.jpg") != std::string::npos;
  EXPECT_TRUE(named);
}

TEST(Dataset, ImageFolderWithSplitsPutsNegativeClassFirst) {
  ft::TempDir dir;
  for (const std::string split : {"train", "val", "test"})
    for (const std::string cls : {"fractured", "not fractured"})
      for (int i = 0; i < 2; ++i)
        ft::write_image(dir / (split + "/" + cls + "/" + std::to_string(i) + ".png"), ft::synthetic_xray(32, 32, i));
  const Dataset d = load_dataset(dir.path.string());
  EXPECT_EQ(d.kind, "imagefolder");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"not fractured", "fractured"}));
  EXPECT_EQ(d.samples.size(), 12u);
  EXPECT_EQ(d.subset("val").size(), 4u);
  for (const auto& s : d.samples) EXPECT_EQ(s.label, s.path.find("not fractured") == std::string::npos ? 1 : 0);
}

TEST(Dataset, ManifestRoundTripsWithRelativePaths) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 10);
  Dataset d = load_dataset(dir.path.string());
  for (size_t i = 0; i < d.samples.size(); ++i) d.samples[i].split = i % 2 ? "train" : "test";
  write_manifest(dir / "split.csv", d);
  std::ifstream in(dir / "split.csv");
  std::string header, first;
  std::getline(in, header);
  std::getline(in, first);
  EXPECT_EQ(header, "path,label,class,split,group,region,hardware,source");
  EXPECT_EQ(first.rfind("images/", 0), 0u) << first;  // relative to the manifest
  const Dataset back = load_dataset(dir / "split.csv");
  ASSERT_EQ(back.samples.size(), d.samples.size());
  EXPECT_EQ(back.class_names, d.class_names);
  for (size_t i = 0; i < d.samples.size(); ++i) {
    EXPECT_EQ(std::filesystem::canonical(back.samples[i].path), std::filesystem::canonical(d.samples[i].path));
    EXPECT_EQ(back.samples[i].label, d.samples[i].label);
    EXPECT_EQ(back.samples[i].split, d.samples[i].split);
    EXPECT_EQ(back.samples[i].region, d.samples[i].region);
    EXPECT_EQ(back.samples[i].hardware, d.samples[i].hardware);
    EXPECT_EQ(back.samples[i].source, d.samples[i].source);
  }
}

TEST(Dataset, ManifestWithClassNameLabelsAndErrors) {
  ft::TempDir dir;
  std::ofstream(dir / "m.csv") << "path,label\nA.png,normal\nB.png,fracture\n\"C,1.png\",normal\n";
  const Dataset d = load_manifest(dir / "m.csv");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"normal", "fracture"}));
  EXPECT_EQ(d.samples[1].label, 1);
  EXPECT_NE(d.samples[2].path.find("C,1.png"), std::string::npos);
  std::ofstream(dir / "bad.csv") << "file,y\na,1\n";
  EXPECT_THROW(load_manifest(dir / "bad.csv"), std::runtime_error);
  EXPECT_THROW(load_dataset(dir / "nope"), std::runtime_error);
}
