#pragma once
// Reads state dicts written by Python's torch.save (zip format, PyTorch >= 1.6).
//
// LibTorch's own torch::pickle_load cannot: a state dict is an OrderedDict,
// which its unpickler turns into None (pytorch/pytorch#100741, fixed only in
// 2.x). So this file interprets the small subset of Python's pickle protocol
// that a state dict uses - dicts, tuples, strings, numbers, and tensors
// rebuilt from the archive's storages - and refuses anything else by name.
#include <functional>
#include <string>

#include "fracture/models/weights_io.h"

namespace fracture::models {

TensorMap read_torch_zip_state_dict(const std::string& path);
// The same from the archive's bytes in memory; `origin` names them in errors.
TensorMap parse_torch_zip_state_dict(const std::string& bytes, const std::string& origin);

// The pickle inside (data.pkl), with `read_record("data/KEY")` giving each
// storage's bytes: the interpreter alone, which the fuzzer drives directly.
using RecordReader = std::function<std::string(const std::string& name)>;
TensorMap parse_state_dict_pickle(const std::string& pickle, const RecordReader& read_record, const std::string& origin);

}  // namespace fracture::models
