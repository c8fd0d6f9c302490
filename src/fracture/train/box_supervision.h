#pragma once
// Box supervision: per-cell fracture log-odds learn which feature-map cells
// the training images' fracture boxes cover - the classifier's own with cell
// pooling, else those of a separate 1x1 conv that exists only during training
// (the saved model is the classifier alone). It tells the trainable stages
// where fractures are, which ~420 image labels say only weakly.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "fracture/data/dataset.h"
#include "fracture/models/classifier.h"

namespace fracture::train {

extern const char* const kNoBoxes;  // why box supervision is off when the data has no boxes

// Targets for the cached training rows: [n, 1, h, w] masks of the cells that
// overlap a fracture box, and [n] whether a row's target is known (a negative
// image has no fracture anywhere; a fractured one without boxes, or whose
// label and boxes disagree, has no cell targets).
struct BoxTargets {
  torch::Tensor mask, known;
  int64_t boxed = 0;  // fractured images with boxes
};
BoxTargets box_targets(const std::vector<data::Sample>& samples, const std::vector<size_t>& rows, int64_t h,
                       int64_t w);

// Cross-entropy of each cell's fracture logit against its box mask. Fracture
// cells are about 1% of all cells, so the two kinds each carry half the loss.
torch::Tensor box_loss(const torch::Tensor& cells, const torch::Tensor& target, const torch::Tensor& known);

// Whether the model's classifier can score single cells (cell pooling needs it).
bool has_linear_head(models::ClassifierImpl& net, torch::Device device);

}  // namespace fracture::train
