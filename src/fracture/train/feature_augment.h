#pragma once
// Augmentation of cached feature maps.
//
// With a frozen-feature cache every epoch sees the same tensors, and the
// trainable stages memorise them (training loss ~0.01 by the last epoch,
// docs/results.md). Re-running the frozen stages on augmented images costs a
// full caching pass per view. Convolutions commute with translation, so a
// shifted feature map is close to the features of a shifted image; a mirrored
// map is not exactly the features of a mirrored image, but serves the same
// purpose: the trainable stages cannot memorise a fixed tensor. Both cost
// microseconds per batch.
#include <torch/torch.h>

namespace fracture::train {

struct FeatureAugmentOptions {
  double flip_probability = 0.5;  // mirror the map left-right
  int max_shift = 2;              // cells, in each direction (2 cells at 1/16 scale = 32 px)
};

// x: [N, C, H, W]. Each map is mirrored and shifted independently, with edge
// cells repeated into the gap. Draws from LibTorch's global generator, so the
// trainer's per-epoch torch::manual_seed makes it reproducible.
torch::Tensor augment_feature_maps(const torch::Tensor& x, const FeatureAugmentOptions& options = {});

}  // namespace fracture::train
