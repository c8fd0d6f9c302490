#pragma once
// Running a classifier over many images: probabilities per sample, in the
// order of the loader's samples, with optional flip test-time augmentation.
#include <torch/torch.h>

#include "fracture/data/loader.h"
#include "fracture/models/classifier.h"

namespace fracture::train {

torch::Device pick_device(const std::string& name);  // "auto", "cpu", "cuda", "cuda:1"

// Softmax probabilities [N, classes]; rows of unreadable samples are NaN.
// With `tta`, each image and its horizontal mirror are averaged.
torch::Tensor predict_probabilities(models::ClassifierImpl& net, data::DataLoader& loader, torch::Device device,
                                    bool tta = false, const std::string& progress_label = "");

}  // namespace fracture::train
