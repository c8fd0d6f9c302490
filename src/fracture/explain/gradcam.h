#pragma once
// Grad-CAM (Selvaraju et al. 2017): where in the image the network's score
// for a class comes from. The last stage's feature maps are weighted by the
// spatially averaged gradient of the class score and summed; positive
// evidence is kept (ReLU) and the map is scaled to [0, 1].
#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "fracture/models/classifier.h"

namespace fracture::explain {

// x: one preprocessed image [1, 3, H, W]. Returns an H x W CV_32F map in [0, 1].
cv::Mat grad_cam(models::ClassifierImpl& net, const torch::Tensor& x, int64_t target_class);
// An ensemble's (members of one architecture, so their maps share a grid):
// the score explained is the ensemble's (the mean of the members' log-odds,
// or of their log-probabilities with more classes), so each member's
// channels are weighted by its share of that score's gradient, and the
// members' weighted maps are summed before the ReLU: Grad-CAM over all the
// members' channels taken as one feature map.
cv::Mat grad_cam(const std::vector<models::Classifier>& nets, const torch::Tensor& x, int64_t target_class);

// Colours the map (JET) and lays it over the picture (8-bit grey or RGB, any
// size; the map is resized to it). Returns BGR 8-bit, ready for imwrite.
cv::Mat overlay_heatmap(const cv::Mat& picture, const cv::Mat& cam, double alpha = 0.45);

}  // namespace fracture::explain
