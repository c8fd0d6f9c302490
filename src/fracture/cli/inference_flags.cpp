#include "fracture/cli/inference_flags.h"


namespace fracture::cli {

void add_inference_flags(CLI::App* cmd, InferenceFlags& f) {
  cmd->add_option("-m,--model", f.model,
                  "Trained model (.safetensors from `fracture train`) or a built-in model's name (fracatlas); "
                  "default: the built-in FracAtlas model (model/FRACATLAS_CARD.md)");
  cmd->add_flag("--tta", f.tta, "Average each image with its mirror image");
  cmd->add_option("-b,--batch-size", f.batch_size,
                  "Images loaded together (on the CPU the network still takes a few at a time: faster there)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--workers", f.workers, "Image loading threads")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--device", f.device, "auto, cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--precision", f.precision,
                  "Number format of the network on the CPU: fp32; bf16 where the CPU has AVX512-BF16 or AMX; int8 "
                  "where it has VNNI, for a model from `fracture calibrate`; auto: int8 where the model's int8 "
                  "check passed and the CPU runs it, else fp32 (EfficientNet-Lite models; docs/benchmarks.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "int8"}));
  cmd->add_option("--max-megapixels", f.max_megapixels,
                  "Images of more pixels (from the file's header) are refused before decoding")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 10000.0));
}

PredictorOptions predictor_options(const InferenceFlags& f) {
  PredictorOptions o;
  o.model = f.model;
  o.device = f.device;
  o.precision = f.precision;
  o.tta = f.tta;
  o.batch_size = f.batch_size;
  o.workers = f.workers;
  o.max_pixels = static_cast<int64_t>(f.max_megapixels * 1e6);
  return o;
}

}  // namespace fracture::cli
