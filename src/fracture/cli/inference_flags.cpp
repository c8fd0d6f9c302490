#include "fracture/cli/inference_flags.h"

#include "fracture/train/inference.h"

namespace fracture::cli {

void add_inference_flags(CLI::App* cmd, InferenceFlags& f) {
  cmd->add_option("-m,--model", f.model, "Trained model (.safetensors from `fracture train`)")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--tta", f.tta, "Average each image with its mirror image");
  cmd->add_option("-b,--batch-size", f.batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--workers", f.workers, "Image loading threads")->capture_default_str();
  cmd->add_option("--device", f.device, "auto, cpu or cuda[:N]")->capture_default_str();
}

ReadyModel load_for_inference(const InferenceFlags& f) {
  ReadyModel r{train::load_model(f.model), train::pick_device(f.device), {}};
  r.model.net->to(r.device);
  r.loader.batch_size = f.batch_size;
  r.loader.workers = f.workers;
  r.loader.preprocess = r.model.info.preprocess;
  return r;
}

}  // namespace fracture::cli
