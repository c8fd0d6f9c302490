#pragma once
// Datasets as lists of labelled image files. Three layouts are read:
//  - FracAtlas release: <root>/dataset.csv + images/Fractured|Non_fractured/*.jpg
//  - ImageFolder: one folder per class, optionally under train/ val/ test/
//    (e.g. Kaggle's "Bone Fracture Multi-Region X-ray Data")
//  - CSV manifest: header with path,label and optionally group,split,region,
//    hardware (paths relative to the manifest's folder). `fracture split`
//    writes this format.
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
};

struct Dataset {
  std::string kind;  // "fracatlas", "imagefolder" or "manifest"
  std::string root;
  std::vector<std::string> class_names;  // label i -> name; for 2 classes, 1 is the positive class
  std::vector<Sample> samples;
  std::vector<std::string> warnings;  // problems met while reading, each naming its file

  std::vector<Sample> subset(const std::string& split) const;
};

// Reads whichever layout `path` is (see above); throws naming the path if none.
Dataset load_dataset(const std::string& path);
Dataset load_fracatlas(const std::string& root);
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
