#pragma once
// A generated two-class data set whose decisive feature is known: class
// "fracture" images carry a bright square at a recorded place, "normal" ones
// do not. Small enough to train on in seconds.
#include <fstream>

#include "fracture/models/registry.h"
#include "fracture/train/checkpoint.h"
#include "helpers.h"

namespace fracture::testing {

// Tests that fine-tune need Lite0's ImageNet weights (scripts/setup.sh fetches them).
inline bool have_lite0() {
  return std::filesystem::exists(models::imagenet_weights_path(models::find_model("efficientnet_lite0")));
}

// The description of a small two-class ResNet-18 model, for tests that save
// and load model files.
inline train::ModelInfo resnet18_info() {
  train::ModelInfo info;
  info.architecture = "resnet18";
  info.class_names = {"normal", "fracture"};
  info.preprocess.size = 64;
  return info;
}

struct SquareImage {
  std::string path;
  int label;
  cv::Point centre;  // of the square, for label 1
};

inline cv::Mat square_image(int size, unsigned seed, bool with_square, cv::Point* centre) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pos(size / 8, size - size / 8 - size / 6);
  cv::Mat img(size, size, CV_8UC1);
  cv::randn(img, 70, 25);
  cv::GaussianBlur(img, img, {5, 5}, 0);
  if (with_square) {
    const int s = size / 6, x = pos(rng), y = pos(rng);
    cv::rectangle(img, cv::Rect(x, y, s, s), cv::Scalar(250), -1);
    if (centre) *centre = {x + s / 2, y + s / 2};
  }
  return img;
}

// ImageFolder layout train/val/test x normal/fracture; returns every image.
inline std::vector<SquareImage> make_square_dataset(const TempDir& dir, int per_class_train, int per_class_eval,
                                                    int size = 160) {
  std::vector<SquareImage> out;
  unsigned seed = 1;
  for (const std::string split : {"train", "val", "test"}) {
    const int n = split == "train" ? per_class_train : per_class_eval;
    for (int label = 0; label < 2; ++label)
      for (int i = 0; i < n; ++i) {
        cv::Point c;
        const cv::Mat img = square_image(size, seed++, label == 1, &c);
        const std::string path = dir / (split + "/" + (label ? "fracture" : "normal") + "/" + std::to_string(i) + ".png");
        write_image(path, img);
        out.push_back({path, label, c});
      }
  }
  return out;
}

}  // namespace fracture::testing
