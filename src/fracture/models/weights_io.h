#pragma once
// Reading and writing tensors: safetensors (the project's canonical format,
// read and written here without Python) and PyTorch's zip-format state dicts
// (what torch.save has written since PyTorch 1.6).
#include <torch/torch.h>

#include <map>
#include <string>

namespace fracture::models {

using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;  // the optional "__metadata__" table
};

// Throws std::runtime_error naming `path` and the problem (truncated file,
// bad header, unknown dtype, tensor outside the data area, ...).
SafetensorsContents load_safetensors(const std::string& path);
// Parses safetensors bytes already in memory; `origin` names them in errors.
SafetensorsContents parse_safetensors(const std::string& bytes, const std::string& origin);
// Serialises to safetensors; tensors are written contiguous, little-endian,
// in key order. Written atomically (temp file + rename).
void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});
std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});

// Reads a state dict saved by torch.save in the zip format.
TensorMap load_pytorch_zip(const std::string& path);

// Reads either format, chosen by the file's first bytes. The pre-1.6 legacy
// pickle format is recognised and refused with the command that converts it.
TensorMap load_tensor_file(const std::string& path);

// Parameters and buffers of a module by their dotted names.
TensorMap module_state(const torch::nn::Module& module);

}  // namespace fracture::models
