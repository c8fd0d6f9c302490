#pragma once
// Leak-free train/val/test splits.
//
// FracAtlas has no patient identifiers, and it holds byte-identical copies and
// near-identical re-encodings of some images. A split that ignores them puts
// the same radiograph on both sides and inflates test scores (the reason the
// published 96.83% cannot be trusted). So images are first grouped - exact
// duplicates by content hash, near-duplicates by the correlation of small
// thumbnails - and whole groups are assigned, stratified by label and region.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fracture/data/dataset.h"

namespace fracture::data {

struct SplitOptions {
  double val_fraction = 0.15;
  double test_fraction = 0.15;
  uint64_t seed = 42;
  bool near_duplicates = true;
  // Pearson correlation of 32x32 thumbnails at or above which two images are
  // taken for the same radiograph. On FracAtlas, 0.99 finds 95 pairs, 0.98
  // 106, 0.95 549 (similar-looking distinct scans start to merge). We lean to
  // the side of merging: a merged pair costs nothing, a missed one leaks.
  double near_duplicate_threshold = 0.98;
  // Also compare each image mirrored and turned by quarter turns: augmented
  // sets (bone-break-types) hold flipped and rotated copies of one figure.
  bool mirrored_and_turned = true;
  int threads = 2;
  bool keep_existing = false;  // keep splits a dataset already has (ImageFolder train/val/test)
};

struct DuplicateReport {
  int exact_pairs = 0, near_pairs = 0, groups_merged = 0, unreadable = 0;
  int turned_pairs = 0;  // of the near pairs, those alike only mirrored or turned
  int cross_source_groups = 0;  // groups with members in more than one source
  std::vector<std::string> mixed_label_groups;  // groups whose images carry different labels (one path each)
  std::vector<std::string> messages;   // unreadable files, each named
  std::vector<std::string> truncated;  // JPEGs missing their end: decoded the part present
};

// Assigns sample.group so that duplicates share one; returns what was found.
DuplicateReport group_duplicates(Dataset& dataset, const SplitOptions& options);

// Groups duplicates (across sources too), then sets every sample's split,
// each source's on its own. Deterministic for a seed.
DuplicateReport assign_splits(Dataset& dataset, const SplitOptions& options);

// counts[split][class name][region] for the printed summary.
using SplitCounts = std::map<std::string, std::map<std::string, std::map<std::string, int>>>;
SplitCounts count_splits(const Dataset& dataset);
std::string format_split_counts(const Dataset& dataset);

}  // namespace fracture::data
