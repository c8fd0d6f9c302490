#include "fracture/explain/gradcam.h"

#include <opencv2/imgproc.hpp>

#include <stdexcept>
#include <vector>

namespace fracture::explain {

namespace {

// One member's weighted feature map [h, w] (before the ReLU) for its share
// of the ensemble's score.
torch::Tensor weighted_map(models::ClassifierImpl& net, const torch::Tensor& x, int64_t target_class, size_t members) {
  net.eval();
  torch::Tensor features;
  {
    torch::NoGradGuard no_grad;  // the backbone's own gradients are not needed
    features = net.forward_features(x);
  }
  auto a = features.detach().requires_grad_(true);
  // The score explained: with two classes, the log-odds z_target - z_other
  // (a single logit also carries evidence common to both classes, which
  // spreads over the background); otherwise the target logit, or in an
  // ensemble the target's log-probability (what the members' mean is of).
  auto logits = net.forward_head(a);
  torch::Tensor score;
  if (logits.size(1) == 2) score = logits.select(1, target_class) - logits.select(1, 1 - target_class);
  else if (members == 1) score = logits.select(1, target_class);
  else score = torch::log_softmax(logits, 1).select(1, target_class);
  auto grad = torch::autograd::grad({score.sum() / static_cast<double>(members)}, {a})[0];
  torch::NoGradGuard no_grad;
  auto weights = grad.mean({2, 3}, /*keepdim=*/true);  // one weight per channel
  return (weights * a).sum(1).squeeze(0).to(torch::kCPU);
}

}  // namespace

cv::Mat grad_cam(models::ClassifierImpl& net, const torch::Tensor& x, int64_t target_class) {
  // Not owned: the caller keeps the network alive for the call.
  return grad_cam(std::vector<models::Classifier>{models::Classifier(models::Classifier(), &net)}, x, target_class);
}

cv::Mat grad_cam(const std::vector<models::Classifier>& nets, const torch::Tensor& x, int64_t target_class) {
  if (nets.empty()) throw std::invalid_argument("grad_cam: no network");
  torch::Tensor sum;
  for (const auto& net : nets) {
    auto map = weighted_map(*net, x, target_class, nets.size());
    if (sum.defined() && !sum.sizes().equals(map.sizes()))
      throw std::invalid_argument("grad_cam: the ensemble's members give feature maps of different sizes");
    sum = sum.defined() ? sum + map : map;
  }
  torch::Tensor cam;
  {
    torch::NoGradGuard no_grad;
    cam = torch::relu(sum).contiguous();  // positive evidence only
    const float peak = cam.max().item<float>();
    if (peak > 0) cam = cam / peak;
  }
  cv::Mat small(static_cast<int>(cam.size(0)), static_cast<int>(cam.size(1)), CV_32F, cam.data_ptr<float>());
  cv::Mat out;
  cv::resize(small, out, {static_cast<int>(x.size(3)), static_cast<int>(x.size(2))}, 0, 0, cv::INTER_CUBIC);
  cv::max(out, 0.0, out);
  cv::min(out, 1.0, out);
  return out;
}

cv::Mat overlay_heatmap(const cv::Mat& picture, const cv::Mat& cam, double alpha) {
  cv::Mat base;
  if (picture.channels() == 1) cv::cvtColor(picture, base, cv::COLOR_GRAY2BGR);
  else cv::cvtColor(picture, base, cv::COLOR_RGB2BGR);
  cv::Mat resized, cam8, colour, out;
  cv::resize(cam, resized, base.size(), 0, 0, cv::INTER_LINEAR);
  resized.convertTo(cam8, CV_8U, 255.0);
  cv::applyColorMap(cam8, colour, cv::COLORMAP_JET);
  cv::addWeighted(base, 1.0 - alpha, colour, alpha, 0.0, out);
  return out;
}

}  // namespace fracture::explain
