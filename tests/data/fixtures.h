#pragma once
// Generated datasets in the layouts the readers support.
#include <fstream>

#include "fracture/data/dataset.h"
#include "helpers.h"

namespace fracture::testing {

// FracAtlas layout: dataset.csv (CRLF) + images/Fractured|Non_fractured.
// `n` images, every 5th fractured; regions cycle hand/leg/hip/shoulder; image 3
// is filed under Fractured/ while the CSV says fractured=0 (as IMG0003298).
inline void make_fracatlas(const std::filesystem::path& dir, int n, int size = 96) {
  std::ofstream csv(dir / "dataset.csv", std::ios::binary);
  csv << "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique\r\n";
  const char* regions[] = {"1,0,0,0,0", "0,1,0,0,0", "0,0,1,0,0", "0,0,0,1,0"};
  for (int i = 0; i < n; ++i) {
    const bool frac = i % 5 == 0 || i == 3;
    char id[32];
    std::snprintf(id, sizeof id, "IMG%07d.jpg", i);
    write_image((dir / (std::string("images/") + (frac ? "Fractured/" : "Non_fractured/") + id)).string(),
                synthetic_xray(size, size + 16, static_cast<unsigned>(i), frac));
    csv << id << "," << regions[i % 4] << "," << (i % 7 == 0) << ",0," << (frac && i != 3) << "," << frac << ",1,0,0\r\n";
  }
}

}  // namespace fracture::testing

namespace fracture::testing {

// YOLO detection layout as Roboflow exports it: images/<original>_png.rf.<hash>.jpg
// (three copies of each original: as is, mirrored, rotated a quarter turn) and
// labels/<same stem>.txt. Every 3rd original is fractured: its label files
// hold a box ("0 cx cy w h"), the rotated copy's as a polygon; the others'
// are empty. data.yaml names the box classes.
inline void make_yolo(const std::filesystem::path& dir, int originals, int size = 96) {
  std::ofstream(dir / "data.yaml") << "train: images\nnc: 1\nnames: ['fracture']\n";
  std::filesystem::create_directories(dir / "labels");
  for (int i = 0; i < originals; ++i) {
    const bool frac = i % 3 == 0;
    const cv::Mat img = synthetic_xray(size, size, static_cast<unsigned>(1000 + i), frac);
    cv::Mat mirrored, rotated;
    cv::flip(img, mirrored, 1);
    cv::rotate(img, rotated, cv::ROTATE_90_CLOCKWISE);
    const std::pair<const char*, cv::Mat> copies[] = {{"a1", img}, {"b2", mirrored}, {"c3", rotated}};
    for (const auto& [hash, pixels] : copies) {
      const std::string stem = "xray" + std::to_string(i) + "_png.rf." + hash + std::to_string(i);
      write_image((dir / ("images/" + stem + ".jpg")).string(), pixels);
      std::ofstream label(dir / ("labels/" + stem + ".txt"));
      if (frac && std::string(hash) == "c3") label << "0 0.2 0.3 0.4 0.3 0.4 0.5 0.2 0.5\n";  // polygon
      else if (frac) label << "0 0.5 0.5 0.2 0.1\n";
    }
  }
}

}  // namespace fracture::testing

namespace fracture::testing {

// `count` generated radiograph-like images of one split, labels alternating
// 0 and 1, the first half of source "a" and the rest of "b", sizes varying.
inline std::vector<data::Sample> labelled_images(const std::filesystem::path& dir, const std::string& split, int count,
                                                 unsigned seed) {
  std::vector<data::Sample> samples;
  for (int i = 0; i < count; ++i) {
    data::Sample s;
    s.path = (dir / (split + std::to_string(i) + ".png")).string();
    s.label = i % 2;
    s.split = split;
    s.source = i < count / 2 ? "a" : "b";
    write_image(s.path, synthetic_xray(72 + 5 * i, 80, seed + static_cast<unsigned>(i), s.label == 1));
    samples.push_back(s);
  }
  return samples;
}

}  // namespace fracture::testing
