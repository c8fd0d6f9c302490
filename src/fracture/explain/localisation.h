#pragma once
// Does a model's fracture map point at the fracture? The pointing game
// (Zhang et al., ECCV 2016) on FracAtlas's boxes: for every fractured image
// with boxes, is the strongest cell of the map on a box? With a linear head
// the map is each cell's fracture log-odds, which is where Grad-CAM (--cam)
// peaks too (tests/explain/gradcam_test.cpp).
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <vector>

#include "fracture/data/loader.h"
#include "fracture/models/classifier.h"

namespace fracture::explain {

struct PointingGame {
  int images = 0;      // fractured images with boxes that were read and scored
  int hits = 0;        // of those, how many have their strongest cell on a box
  double chance = 0;   // mean share of an image's cells that lie on a box: a random cell's hit rate
  int grid_h = 0, grid_w = 0;
  // images, hits, hit_rate {value, ci95_low, ci95_high} (Wilson score
  // interval), chance, grid and how it was played.
  nlohmann::json to_json() const;
};

// Plays it on the fractured samples that have FracAtlas box files, read with
// `options` (which must stretch, not letterbox: the boxes follow the image
// only then). Box files that cannot be parsed are warned about and left out,
// as are unreadable images. Throws std::invalid_argument for a model whose
// head is not one linear layer (no cell map), or for letterboxed input.
PointingGame pointing_game(models::ClassifierImpl& net, const std::vector<data::Sample>& samples,
                           const data::LoaderOptions& options, torch::Device device);
// An ensemble's: the cell map is the mean of its members' cell log-odds
// (members of one architecture share the grid), as its image log-odds are.
PointingGame pointing_game(const std::vector<models::Classifier>& nets, const std::vector<data::Sample>& samples,
                           const data::LoaderOptions& options, torch::Device device);

}  // namespace fracture::explain
