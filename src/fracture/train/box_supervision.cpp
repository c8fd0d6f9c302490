#include "fracture/train/box_supervision.h"

#include <spdlog/spdlog.h>

#include "fracture/data/boxes.h"

namespace fracture::train {

const char* const kNoBoxes =
    "no fractured training image has boxes (FracAtlas keeps them in <root>/Annotations/YOLO/<stem>.txt, YOLO layouts in labels/<stem>.txt)";

bool has_linear_head(models::ClassifierImpl& net, torch::Device device) {
  try {
    torch::NoGradGuard g;
    net.cell_logits(torch::zeros({1, net.num_features(), 1, 1}, torch::TensorOptions().device(device)));
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

BoxTargets box_targets(const std::vector<data::Sample>& samples, const std::vector<size_t>& rows, int64_t h,
                       int64_t w) {
  std::vector<torch::Tensor> masks;
  std::vector<float> known;
  int64_t boxed = 0, positives = 0;
  for (size_t r : rows) {
    const auto& s = samples.at(r);
    const auto read = data::image_boxes(s.path, "gets no box loss");
    const bool ok = read.has_value();
    const std::vector<data::Box> boxes = read.value_or(std::vector<data::Box>{});
    const bool positive = s.label == 1;
    positives += positive;
    boxed += positive && ok && !boxes.empty();
    known.push_back(ok && positive != boxes.empty() ? 1.f : 0.f);
    masks.push_back(data::box_mask(boxes, h, w).unsqueeze(0));
  }
  if (boxed > 0)
    spdlog::info("box supervision: {} of {} fractured training images have boxes, on a {}x{} grid", boxed, positives,
                 h, w);
  return {torch::stack(masks), torch::tensor(known), boxed};
}

torch::Tensor box_loss(const torch::Tensor& cells, const torch::Tensor& target, const torch::Tensor& known) {
  const auto k = known.view({-1, 1, 1, 1}).expand_as(target);
  const auto pos = target * k, neg = (1 - target) * k;
  const auto bce = torch::nn::functional::binary_cross_entropy_with_logits(
      cells, target, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  return 0.5 * (bce * pos).sum() / pos.sum().clamp_min(1) + 0.5 * (bce * neg).sum() / neg.sum().clamp_min(1);
}

}  // namespace fracture::train
