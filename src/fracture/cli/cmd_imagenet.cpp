#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>

#include "fracture/cli/commands.h"
#include "fracture/data/image_io.h"
#include "fracture/data/transforms.h"
#include "fracture/models/registry.h"
#include "fracture/util/paths.h"

namespace fracture::cli {

void add_imagenet_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "imagenet", "Top-5 ImageNet classes of photographs: a check that pretrained weights load and work");
  struct Args {
    std::string model = "efficientnet_lite0", weights;
    std::vector<std::string> images;
    int top = 5;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("images", a->images, "Image files")->required()->check(CLI::ExistingFile);
  cmd->add_option("-m,--model", a->model, "Model name (see `fracture models`)")->capture_default_str();
  cmd->add_option("--weights", a->weights, "Weights file instead of the cached ImageNet weights");
  cmd->add_option("--top", a->top, "How many classes to show")->capture_default_str();
  cmd->footer("Example:\n  fracture imagenet /usr/lib/python3/dist-packages/skimage/data/chelsea.png");
  cmd->callback([a] {
    const auto& spec = models::find_model(a->model);
    auto model = models::create_model(a->model, {1000, a->weights.empty(), a->weights});
    model->eval();
    std::vector<std::string> names;
    std::ifstream in(util::weights_dir() + "/imagenet_classes.txt");
    for (std::string line; std::getline(in, line);) names.push_back(line);
    data::PreprocessOptions pre;
    pre.size = spec.input_size;
    pre.mean = spec.mean;
    pre.std = spec.std;
    torch::NoGradGuard no_grad;
    for (const auto& path : a->images) {
      try {
        auto img = data::decode_image(path, {true, 0});
        auto x = data::to_tensor(data::preprocess(img.pixels, pre), pre.mean, pre.std).unsqueeze(0);
        auto probs = torch::softmax(model->forward(x), 1)[0];
        auto [values, indices] = probs.topk(a->top);
        std::cout << path << "\n";
        for (int k = 0; k < a->top; ++k) {
          const int64_t c = indices[k].item<int64_t>();
          std::cout << fmt::format("  {:>4} {:6.2f}%  {}\n", c, 100 * values[k].item<float>(),
                                   c < static_cast<int64_t>(names.size()) ? names[c] : "");
        }
      } catch (const data::ImageError& e) {
        spdlog::error("{}", e.what());
      }
    }
  });
}

}  // namespace fracture::cli
