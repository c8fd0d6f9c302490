#include "fracture/explain/gradcam.h"

#include <opencv2/imgproc.hpp>

namespace fracture::explain {

cv::Mat grad_cam(models::ClassifierImpl& net, const torch::Tensor& x, int64_t target_class) {
  net.eval();
  torch::Tensor features;
  {
    torch::NoGradGuard no_grad;  // the backbone's own gradients are not needed
    features = net.forward_features(x);
  }
  auto a = features.detach().requires_grad_(true);
  // The score explained: with two classes, the log-odds z_target - z_other
  // (a single logit also carries evidence common to both classes, which
  // spreads over the background); otherwise the target logit.
  auto logits = net.forward_head(a);
  auto score = logits.size(1) == 2 ? (logits.select(1, target_class) - logits.select(1, 1 - target_class)).sum()
                                   : logits.select(1, target_class).sum();
  auto grad = torch::autograd::grad({score}, {a})[0];
  torch::Tensor cam;
  {
    torch::NoGradGuard no_grad;
    auto weights = grad.mean({2, 3}, /*keepdim=*/true);  // one weight per channel
    cam = torch::relu((weights * a).sum(1)).squeeze(0).to(torch::kCPU).contiguous();  // [h, w]
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
