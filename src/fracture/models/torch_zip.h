#pragma once
// Reads state dicts written by Python's torch.save (zip format, PyTorch >= 1.6).
//
// LibTorch's own torch::pickle_load cannot: a state dict is an OrderedDict,
// which its unpickler turns into None (pytorch/pytorch#100741, fixed only in
// 2.x). So this file interprets the small subset of Python's pickle protocol
// that a state dict uses - dicts, tuples, strings, numbers, and tensors
// rebuilt from the archive's storages - and refuses anything else by name.
#include <string>

#include "fracture/models/weights_io.h"

namespace fracture::models {

TensorMap read_torch_zip_state_dict(const std::string& path);

}  // namespace fracture::models
