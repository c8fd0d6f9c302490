#pragma once
// Running a classifier over many images: probabilities per sample, in the
// order of the loader's samples, with optional flip test-time augmentation.
#include <torch/torch.h>

#include "fracture/data/loader.h"
#include "fracture/models/classifier.h"

namespace fracture::train {

torch::Device pick_device(const std::string& name);  // "auto", "cpu", "cuda", "cuda:1"

// Readies a trained network for prediction only: eval mode, on `device`,
// BatchNorm folded into the convolutions, channels-last where it pays for
// `batch_size`. Measured on the 2-core CPU (docs/benchmarks.md): folding
// takes a batch-32 Lite0 forward with channels-last weights from 930 to
// 671 ms and a batch-1 one from 15.2 to 12.1 ms. Do not train it afterwards.
void prepare_for_inference(models::ClassifierImpl& net, torch::Device device, int64_t batch_size);

// Softmax probabilities [N, classes]; rows of unreadable samples are NaN.
// With `tta`, each image and its horizontal mirror are averaged.
torch::Tensor predict_probabilities(models::ClassifierImpl& net, data::DataLoader& loader, torch::Device device,
                                    bool tta = false, const std::string& progress_label = "");

}  // namespace fracture::train
