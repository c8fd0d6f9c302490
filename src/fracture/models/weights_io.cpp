#include "fracture/models/weights_io.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "fracture/models/torch_zip.h"
#include "fracture/util/atomic_file.h"

namespace fracture::models {
namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},  {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},       {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DtypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return &d;
  return nullptr;
}

const DtypeInfo* dtype_by_type(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw std::runtime_error(origin + ": not a valid safetensors file: " + what);
}

}  // namespace

SafetensorsContents parse_safetensors(const std::string& bytes, const std::string& origin) {
  if (bytes.size() < 8) fail(origin, "shorter than its 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  if (header_len > bytes.size() - 8) fail(origin, "header length " + std::to_string(header_len) + " exceeds file size");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_len));
  } catch (const std::exception& e) {
    fail(origin, std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) fail(origin, "header is not a JSON object");
  const size_t data_start = 8 + header_len;
  const size_t data_len = bytes.size() - data_start;

  SafetensorsContents out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      for (auto m = it.value().begin(); m != it.value().end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const auto& info = it.value();
    if (!info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      fail(origin, "tensor '" + it.key() + "' lacks dtype, shape or data_offsets");
    const DtypeInfo* dt = dtype_by_name(info["dtype"].get<std::string>());
    if (!dt) fail(origin, "tensor '" + it.key() + "' has unsupported dtype " + info["dtype"].dump());
    std::vector<int64_t> shape = info["shape"].get<std::vector<int64_t>>();
    int64_t numel = 1;
    for (int64_t d : shape) {
      if (d < 0) fail(origin, "tensor '" + it.key() + "' has a negative dimension");
      numel *= d;
    }
    const auto offs = info["data_offsets"].get<std::vector<uint64_t>>();
    if (offs.size() != 2 || offs[0] > offs[1] || offs[1] > data_len)
      fail(origin, "tensor '" + it.key() + "' lies outside the data area (file truncated?)");
    if (offs[1] - offs[0] != static_cast<uint64_t>(numel) * dt->size)
      fail(origin, "tensor '" + it.key() + "' byte size does not match its shape");
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dt->type));
    if (numel > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + offs[0], offs[1] - offs[0]);
    out.tensors.emplace(it.key(), std::move(t));
  }
  return out;
}

SafetensorsContents load_safetensors(const std::string& path) {
  return parse_safetensors(util::read_file(path), path);
}

std::string serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> ordered;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    const DtypeInfo* dt = dtype_by_type(tensor.scalar_type());
    if (!dt) throw std::runtime_error("cannot save tensor '" + name + "': unsupported dtype");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t n = static_cast<uint64_t>(t.numel()) * dt->size;
    header[name] = {{"dtype", dt->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    ordered.push_back(t);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // the format pads the header to 8 bytes
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& t : ordered)
    out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  return out;
}

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  util::write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

TensorMap load_pytorch_zip(const std::string& path) { return read_torch_zip_state_dict(path); }

TensorMap load_tensor_file(const std::string& path) {
  std::string head;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    head.resize(8);
    in.read(head.data(), 8);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  if (head.size() >= 2 && head[0] == 'P' && head[1] == 'K') return load_pytorch_zip(path);
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x80 && static_cast<unsigned char>(head[1]) <= 5)
    throw std::runtime_error(path +
                             ": legacy (pre-1.6) PyTorch pickle; convert it once with "
                             "`python3 scripts/convert_weights.py " + path + " OUT.safetensors`");
  return load_safetensors(path).tensors;
}

TensorMap module_state(const torch::nn::Module& module) {
  TensorMap out;
  for (const auto& p : module.named_parameters(true)) out.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) out.emplace(b.key(), b.value());
  return out;
}

}  // namespace fracture::models
