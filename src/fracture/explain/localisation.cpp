#include "fracture/explain/localisation.h"

#include <spdlog/spdlog.h>

#include "fracture/data/boxes.h"
#include "fracture/eval/metrics.h"

namespace fracture::explain {

nlohmann::json PointingGame::to_json() const {
  const auto rate = eval::wilson_interval(hits, images);
  return {{"images", images},
          {"hits", hits},
          {"hit_rate", {{"value", rate.value}, {"ci95_low", rate.low}, {"ci95_high", rate.high}}},
          {"chance", chance},
          {"grid", {grid_h, grid_w}},
          {"method",
           "pointing game on the fractured images with boxes: a hit when the cell with the highest fracture "
           "log-odds (the peak of --cam) overlaps a box; 95% CI by the Wilson score interval; chance is the mean "
           "share of cells on a box"}};
}

PointingGame pointing_game(models::ClassifierImpl& net, const std::vector<data::Sample>& samples,
                           const data::LoaderOptions& options, torch::Device device) {
  // Not owned: the caller keeps the network alive for the call.
  return pointing_game(std::vector<models::Classifier>{models::Classifier(models::Classifier(), &net)}, samples, options,
                       device);
}

PointingGame pointing_game(const std::vector<models::Classifier>& nets, const std::vector<data::Sample>& samples,
                           const data::LoaderOptions& options, torch::Device device) {
  if (nets.empty()) throw std::invalid_argument("pointing_game: no network");
  if (options.preprocess.resize != data::ResizeMode::Stretch)
    throw std::invalid_argument("the pointing game needs stretched input: letterboxing moves the image but not its boxes");
  std::vector<data::Sample> boxed;
  std::vector<std::vector<data::Box>> boxes;
  for (const auto& s : samples) {
    if (s.label != 1) continue;
    auto b = data::image_boxes(s.path, "is left out of the pointing game");
    if (!b || b->empty()) continue;
    boxed.push_back(s);
    boxes.push_back(std::move(*b));
  }
  PointingGame game;
  if (boxed.empty()) return game;
  torch::NoGradGuard no_grad;
  for (const auto& net : nets) net->eval();
  data::DataLoader loader(boxed, options);
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    if (batch->empty()) continue;
    const auto x = batch->images.to(device);
    torch::Tensor sum;
    for (const auto& net : nets) {
      auto c = net->cell_log_odds(net->forward_features(x));
      sum = sum.defined() ? sum + c : c;
    }
    const auto cells = (sum / static_cast<double>(nets.size())).to(torch::kCPU);  // [n, h, w]
    game.grid_h = static_cast<int>(cells.size(1));
    game.grid_w = static_cast<int>(cells.size(2));
    const auto top = cells.flatten(1).argmax(1);
    for (size_t k = 0; k < batch->indices.size(); ++k) {
      const auto mask = data::box_mask(boxes[batch->indices[k]], game.grid_h, game.grid_w).flatten();
      game.hits += mask[top[static_cast<int64_t>(k)].item<int64_t>()].item<float>() > 0;
      game.chance += mask.mean().item<double>();
      ++game.images;
    }
  }
  if (game.images > 0) game.chance /= game.images;
  for (const auto& f : loader.stats().failures) spdlog::warn("left out of the pointing game: {}", f);
  return game;
}

}  // namespace fracture::explain
