#pragma once
// Datasets as lists of labelled image files. Four layouts are read:
//  - FracAtlas release: <root>/dataset.csv + images/Fractured|Non_fractured/*.jpg
//  - YOLO detection (Ultralytics, Roboflow exports): <root>/images/[<part>/]*.jpg
//    + labels/[<part>/]<stem>.txt (+ data.yaml naming the box classes). An
//    image is fractured when its label file holds a box; the boxes also feed
//    box supervision (data/boxes.h).
//  - ImageFolder: one folder per class, optionally under train/ val/ test/
//    (e.g. Kaggle's "Bone Fracture Multi-Region X-ray Data")
//  - CSV manifest: header with path,label and optionally group,split,region,
//    hardware,source (paths relative to the manifest's folder). `fracture
//    split` writes this format.
// Several of them can be used together (load_datasets): each sample then
// names its source, and splits, sampling and validation treat sources apart.
#include <string>
#include <vector>

namespace fracture::data {

struct Sample {
  std::string path;        // absolute or relative to the working directory
  int label = 0;           // index into Dataset::class_names
  std::string split;       // "train", "val", "test" or empty
  std::string group;       // samples sharing a group stay on one side of a split
  std::string region;      // FracAtlas body region (hand, leg, hip, shoulder, mixed)
  int hardware = -1;       // FracAtlas: implant visible (1/0), -1 unknown
  std::string source;      // the data set it came from (its folder's name), e.g. "fracatlas"
};

struct Dataset {
  std::string kind;  // "fracatlas", "yolo", "imagefolder", "manifest" or "combined"
  std::string root;
  std::vector<std::string> class_names;  // label i -> name; for 2 classes, 1 is the positive class
  std::vector<Sample> samples;
  std::vector<std::string> warnings;  // problems met while reading, each naming its file

  std::vector<Sample> subset(const std::string& split) const;
  // The sources of the samples, in order of first appearance.
  std::vector<std::string> sources() const;
};

// Reads whichever layout `path` is (see above); throws naming the path if none.
Dataset load_dataset(const std::string& path);
// Several data sets as one: classes must agree (two-class sets are matched
// negative to negative, with a warning when their names differ); samples
// keep their source. One path is load_dataset(path).
Dataset load_datasets(const std::vector<std::string>& paths);
Dataset load_fracatlas(const std::string& root);
Dataset load_yolo(const std::string& root);
Dataset load_image_folder(const std::string& root);
Dataset load_manifest(const std::string& csv_path);
// The same from the manifest's text (paths relative to csv_path's folder).
Dataset parse_manifest(const std::string& text, const std::string& csv_path);

// Writes a manifest (atomically) that load_manifest reads back; paths are
// written relative to the manifest's folder when they lie below it.
void write_manifest(const std::string& csv_path, const Dataset& dataset);

// Orders class names so that, with two classes, the negative one ("normal",
// "non_fractured", "not fractured", "no_...") gets label 0 and the positive 1.
// Otherwise: alphabetical, like torchvision's ImageFolder.
std::vector<std::string> order_class_names(std::vector<std::string> names);

}  // namespace fracture::data
