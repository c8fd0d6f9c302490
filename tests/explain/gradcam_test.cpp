#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "fracture/explain/gradcam.h"
#include "fracture/models/registry.h"

using namespace fracture;

// With a linear classifier, Grad-CAM of the fracture log-odds is the map of
// the cells' own log-odds (above the classifier's bias), whatever the pooling:
// the gradient of the pooled score is w * (each cell's pooling weight), whose
// mean over cells is w / n. So --cam shows exactly the cell evidence a
// cell-pooled model takes its soft maximum of, and for an average-pooled one
// the class activation map.
TEST(GradCam, IsTheCellLogOddsMapAboveTheBias) {
  torch::manual_seed(3);
  auto net = models::find_model("efficientnet_lite0").build(2);
  net->eval();
  {
    // Random batch-norm statistics, as after training: with the initial ones
    // (mean 0, variance 1) the last feature map comes out nearly uniform.
    torch::NoGradGuard g;
    for (auto& b : net->named_buffers()) {
      if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.1);
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.01, 0.1);
    }
  }
  const auto x = torch::randn({1, 3, 128, 128});
  torch::Tensor features;
  {
    torch::NoGradGuard g;
    features = net->forward_features(x);
  }
  // A classifier whose cell map sums to zero, so it has cells on both sides
  // of the bias and the test sees the clipping too: the weights are the
  // difference between two cells' features, less its part along the mean
  // feature (a random classifier's map is often all one sign).
  torch::Tensor evidence;
  {
    torch::NoGradGuard g;
    const auto a = features[0].flatten(1);  // [C, cells]
    const auto mean = a.mean(1);
    auto w = a.select(1, 0) - a.select(1, a.size(1) - 1);
    w = w - (w.dot(mean) / mean.dot(mean)) * mean;
    for (auto& p : net->named_parameters()) {
      if (p.key() == net->classifier_prefix() + "weight") p.value().copy_(torch::stack({torch::zeros_like(w), w}));
      if (p.key() == net->classifier_prefix() + "bias") p.value().copy_(torch::tensor({0.3f, -0.2f}));
    }
    const auto bias = net->cell_log_odds(torch::zeros_like(features));  // the bias alone, in every cell
    evidence = (net->cell_log_odds(features) - bias)[0];
  }
  ASSERT_TRUE((evidence > 0).any().item<bool>() && (evidence < 0).any().item<bool>());
  ASSERT_GT(evidence.size(0), 2);
  auto expected = (torch::relu(evidence) / evidence.max()).contiguous();
  cv::Mat small(static_cast<int>(expected.size(0)), static_cast<int>(expected.size(1)), CV_32F, expected.data_ptr<float>());
  cv::Mat want;
  cv::resize(small, want, {128, 128}, 0, 0, cv::INTER_CUBIC);
  want = cv::min(cv::max(want, 0.0), 1.0);
  for (double r : {0.0, 4.0}) {
    net->set_cell_pooling(r);
    const cv::Mat cam = explain::grad_cam(*net, x, 1);
    ASSERT_EQ(cam.size(), want.size());
    EXPECT_LT(cv::norm(cam, want, cv::NORM_INF), 1e-4) << "cell pooling " << r;
  }
}
