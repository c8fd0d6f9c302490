#pragma once
// Running a classifier over many images: probabilities per sample, in the
// order of the loader's samples, with optional flip test-time augmentation.
#include <torch/torch.h>

#include <functional>

#include "fracture/data/loader.h"
#include "fracture/models/classifier.h"

namespace fracture::train {

torch::Device pick_device(const std::string& name);  // "auto", "cpu", "cuda", "cuda:1"

// Readies a trained network for prediction only: eval mode, on `device`,
// BatchNorm folded into the convolutions, channels-last weights on
// the CPU (folding: about -40% for a batch-32 Lite0 forward with channels-last
// weights, docs/benchmarks.md). Do not train it afterwards.
void prepare_for_inference(models::ClassifierImpl& net, torch::Device device);

// On the CPU a forward pass over a few images at a time beats one over a
// whole batch: a few images' activations stay in the cache. This is how many
// images of height x width one pass should take (see docs/benchmarks.md).
int64_t cpu_images_per_forward(int64_t height, int64_t width);
// forward(x), in slices of cpu_images_per_forward images on the CPU.
torch::Tensor forward_in_chunks(const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                                const torch::Tensor& x);

// One batch's results, as soon as it is scored: `probabilities` [n, classes]
// (CPU) for the loader samples `indices`, and the samples that could not be
// read, each with its message.
struct ScoredBatch {
  std::vector<size_t> indices;
  torch::Tensor probabilities;
  std::vector<std::pair<size_t, std::string>> failures;
};

// Images -> logits: net.forward, or the same through another engine (the
// Predictor's oneDNN body).
using Forward = std::function<torch::Tensor(const torch::Tensor&)>;

// Scores the loader's samples batch by batch, calling `on_batch` with each
// in order (bounded memory: nothing is kept). With `tta`, each image and
// its horizontal mirror are averaged. `forward` replaces net.forward when given.
void predict_batches(models::ClassifierImpl& net, data::DataLoader& loader, torch::Device device, bool tta,
                     const std::function<void(const ScoredBatch&)>& on_batch, const std::string& progress_label = "",
                     const Forward& forward = {});

// Softmax probabilities [N, classes]; rows of unreadable samples are NaN.
torch::Tensor predict_probabilities(models::ClassifierImpl& net, data::DataLoader& loader, torch::Device device,
                                    bool tta = false, const std::string& progress_label = "",
                                    const Forward& forward = {});

// An ensemble's probabilities from its members' ([N, classes] each): the
// normalised geometric mean, softmax(mean log p). For two classes that is the
// mean of the members' log-odds, so a confident member is not diluted the way
// an arithmetic mean of probabilities dilutes it. NaN rows stay NaN.
torch::Tensor combine_probabilities(const std::vector<torch::Tensor>& members);

}  // namespace fracture::train
