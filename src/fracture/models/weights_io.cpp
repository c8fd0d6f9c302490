#include "fracture/models/weights_io.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
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

// The safetensors specification caps the header at 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

SafetensorsContents parse_safetensors(const std::string& bytes, const std::string& origin) {
  if (bytes.size() < 8) fail(origin, "shorter than its 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  if (header_len > bytes.size() - 8) fail(origin, "header length " + std::to_string(header_len) + " exceeds file size");
  if (header_len > kMaxHeaderBytes) fail(origin, "header of " + std::to_string(header_len) + " bytes (at most 100 MB)");
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
    const std::string where = "tensor '" + it.key() + "'";
    const auto& info = it.value();
    if (it.key() == "__metadata__") {
      if (!info.is_object()) fail(origin, "__metadata__ is not a JSON object");
      for (auto m = info.begin(); m != info.end(); ++m)
        out.metadata[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    if (!info.is_object() || !info.contains("dtype") || !info.contains("shape") || !info.contains("data_offsets"))
      fail(origin, where + " lacks dtype, shape or data_offsets");
    if (!info["dtype"].is_string()) fail(origin, where + ": dtype is not a string");
    const DtypeInfo* dt = dtype_by_name(info["dtype"].get<std::string>());
    if (!dt) fail(origin, where + " has unsupported dtype " + info["dtype"].dump());
    const auto& shape_json = info["shape"];
    const auto& offs_json = info["data_offsets"];
    if (!shape_json.is_array() || shape_json.size() > 8) fail(origin, where + ": shape is not a list of at most 8 sizes");
    if (!offs_json.is_array() || offs_json.size() != 2) fail(origin, where + ": data_offsets is not [begin, end]");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : shape_json) {
      if (!d.is_number_unsigned()) fail(origin, where + " has a dimension that is not a non-negative integer");
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40) || __builtin_mul_overflow(numel, v, &numel))
        fail(origin, where + " has a shape whose size overflows");
      shape.push_back(static_cast<int64_t>(v));
    }
    for (const auto& v : offs_json)
      if (!v.is_number_unsigned()) fail(origin, where + ": data_offsets are not non-negative integers");
    const uint64_t begin = offs_json[0].get<uint64_t>(), end = offs_json[1].get<uint64_t>();
    if (begin > end || end > data_len) fail(origin, where + " lies outside the data area (file truncated?)");
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, dt->size, &nbytes) || end - begin != nbytes)
      fail(origin, where + ": byte size " + std::to_string(end - begin) + " does not match its dtype and shape");
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dt->type));
    if (numel > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + begin, nbytes);
    out.tensors.emplace(it.key(), std::move(t));
  }
  return out;
}

SafetensorsContents load_safetensors(const std::string& path) {
  const std::string bytes = util::read_file(path);
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K')
    throw std::runtime_error(path + ": a PyTorch zip archive (.pth), not safetensors; `fracture weights convert` "
                                    "turns one into safetensors");
  return parse_safetensors(bytes, path);
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
    if (!std::filesystem::is_regular_file(path)) util::read_file(path, 0);  // throws: names what the path is
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
