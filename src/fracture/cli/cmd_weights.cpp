#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "fracture/cli/commands.h"
#include "fracture/models/name_map.h"
#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"
#include "fracture/util/paths.h"

namespace fracture::cli {

void add_weights_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("weights", "Show the weights cache; import or export weights in other namings");
  cmd->require_subcommand(1);

  auto* list = cmd->add_subcommand("list", "Where pretrained weights are cached, and which are there");
  list->callback([] {
    std::cout << "weights directory: " << util::weights_dir() << "\n";
    for (const auto& spec : models::model_registry()) {
      if (!spec.imagenet) continue;
      const auto path = models::imagenet_weights_path(spec);
      std::cout << fmt::format("  {:<20} {:<8} {}\n", spec.name, std::filesystem::exists(path) ? "cached" : "missing",
                               spec.imagenet->origin);
    }
  });

  struct Args {
    std::string model, in, out, naming = "fracture";
  };
  auto a = std::make_shared<Args>();
  auto* convert = cmd->add_subcommand(
      "convert", "Read a state dict (torchvision, timm or lukemelas names; .safetensors or zip .pth) and write it as safetensors");
  convert->add_option("-m,--model", a->model, "Model it belongs to (see `fracture models`)")->required();
  convert->add_option("--in", a->in, "Input weights")->required()->check(CLI::ExistingFile);
  convert->add_option("--out", a->out, "Output .safetensors")->required();
  convert->add_option("--naming", a->naming, "Names to write: fracture, torchvision, timm or lukemelas")->capture_default_str();
  convert->footer(
      "The file is checked against the model (every tensor present, every shape right) before\n"
      "anything is written.\n\nExample:\n"
      "  fracture weights convert -m efficientnet_b0 --in efficientnet_b0_rwightman-3dd342df.pth --out b0.safetensors");
  convert->callback([a] {
    auto model = models::find_model(a->model).build(1000);
    auto head = models::load_tensor_file(a->in);
    int64_t classes = 1000;
    for (const auto& [k, v] : head)  // keep the file's own number of classes
      if (v.dim() == 2 && (k.find("classifier") != std::string::npos || k.find("fc.") != std::string::npos ||
                           k.find("_fc.") != std::string::npos))
        classes = v.size(0);
    if (classes != 1000) model = models::find_model(a->model).build(classes);
    const auto rep = models::load_weights_file(*model, a->in);
    const auto naming = models::parse_naming(a->naming);
    models::save_safetensors(a->out, models::to_their_names(*model, naming),
                             {{"model", a->model}, {"naming", a->naming}, {"source", a->in}});
    spdlog::info("{}: {} tensors loaded and written to {} ({} naming)", a->in, rep.loaded.size(), a->out, a->naming);
  });

  auto h = std::make_shared<Args>();
  auto* half = cmd->add_subcommand("fp16", "Store a .safetensors file's float32 tensors as float16 (half the size; loads as float32)");
  half->add_option("--in", h->in, "Input .safetensors (a trained model or backbone weights)")->required()->check(CLI::ExistingFile);
  half->add_option("--out", h->out, "Output .safetensors")->required();
  half->footer("Metadata (a trained model's architecture, threshold, preprocessing) is kept.\n\nExample:\n"
               "  fracture weights fp16 --in runs/lite0/best.safetensors --out lite0-fp16.safetensors");
  half->callback([h] {
    auto c = models::load_safetensors(h->in);
    size_t converted = 0;
    for (auto& [k, v] : c.tensors)
      if (v.scalar_type() == torch::kFloat32) v = v.to(torch::kFloat16), ++converted;
    models::save_safetensors(h->out, c.tensors, c.metadata);
    spdlog::info("{}: {} of {} tensors stored as float16 in {} ({:.1f} MB)", h->in, converted, c.tensors.size(), h->out,
                 static_cast<double>(std::filesystem::file_size(h->out)) / 1e6);
  });
}

}  // namespace fracture::cli
