#include "fracture/train/checkpoint.h"

#include <map>
#include <stdexcept>

#include <cmath>
#include <set>

#include "fracture/models/layers.h"
#include "fracture/models/name_map.h"
#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"

namespace fracture::train {
namespace {
// The largest classifier here (VGG-16, float32) is 553 MB.
constexpr uint64_t kMaxModelBytes = uint64_t{2} << 30;
// More networks than this in one file is not an ensemble anyone meant.
constexpr int kMaxMembers = 16;

std::string member_prefix(int k) { return "members." + std::to_string(k) + "."; }

models::TensorMap state_of(models::ClassifierImpl& net, const std::string& path, const std::string& prefix = "") {
  if (models::has_folded_batchnorm(net))
    throw std::logic_error(path + ": not saved: this network was prepared for inference (BatchNorm folded into its "
                                  "convolutions) and would reload with BatchNorm applied twice");
  models::TensorMap state;
  for (auto& [k, v] : models::module_state(net)) state[prefix + k] = v.detach().to(torch::kCPU);
  return state;
}
}  // namespace

std::string resize_mode_name(data::ResizeMode m) { return m == data::ResizeMode::Stretch ? "stretch" : "letterbox"; }

data::ResizeMode parse_resize_mode(const std::string& s) {
  if (s == "stretch") return data::ResizeMode::Stretch;
  if (s == "letterbox") return data::ResizeMode::Letterbox;
  throw std::invalid_argument("resize mode must be 'stretch' or 'letterbox', not '" + s + "'");
}

nlohmann::json ModelInfo::to_json() const {
  nlohmann::json j{{"format", "fracture-model/1"},
          {"architecture", architecture},
          {"class_names", class_names},
          {"input_size", preprocess.size},
          {"resize", resize_mode_name(preprocess.resize)},
          {"clahe", preprocess.clahe},
          {"standardise", preprocess.standardise},
          {"mean", preprocess.mean},
          {"std", preprocess.std},
          {"threshold", threshold},
          {"threshold_rule", threshold_rule},
          {"cell_pooling", cell_pooling},
          {"extra", extra}};
  if (members > 1) j["members"] = members;  // absent: one network, as in every file before ensembles
  return j;
}

ModelInfo ModelInfo::from_json(const nlohmann::json& j, const std::string& origin) {
  try {
    ModelInfo m;
    m.architecture = j.at("architecture").get<std::string>();
    m.class_names = j.at("class_names").get<std::vector<std::string>>();
    m.preprocess.size = j.at("input_size").get<int>();
    m.preprocess.resize = parse_resize_mode(j.at("resize").get<std::string>());
    m.preprocess.clahe = j.at("clahe").get<bool>();
    m.preprocess.standardise = j.value("standardise", false);  // absent in models saved before it existed
    m.preprocess.mean = j.at("mean").get<std::array<float, 3>>();
    m.preprocess.std = j.at("std").get<std::array<float, 3>>();
    m.threshold = j.at("threshold").get<double>();
    m.threshold_rule = j.value("threshold_rule", "");
    m.cell_pooling = j.value("cell_pooling", 0.0);  // absent in models saved before it existed
    m.extra = j.value("extra", nlohmann::json::object());
    m.members = j.value("members", 1);
    return m;
  } catch (const std::exception& e) {
    throw std::runtime_error(origin + ": model description is incomplete or mistyped (" + e.what() + ")");
  }
}

void validate_model_info(const ModelInfo& m, const std::string& origin) {
  auto bad = [&](const std::string& what) { throw std::runtime_error(origin + ": invalid model description: " + what); };
  if (m.class_names.size() < 2) bad("fewer than two classes");
  std::set<std::string> names;
  for (const auto& n : m.class_names) {
    if (n.empty()) bad("an empty class name");
    if (!names.insert(n).second) bad("class name '" + n + "' appears twice");
  }
  if (!std::isfinite(m.threshold) || m.threshold < 0 || m.threshold > 1)
    bad("threshold " + std::to_string(m.threshold) + " is not a probability in [0, 1]");
  if (m.preprocess.size < 16 || m.preprocess.size > 4096)
    bad("input size " + std::to_string(m.preprocess.size) + " outside 16-4096 pixels");
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(m.preprocess.mean[c])) bad("a mean that is not a finite number");
    if (!std::isfinite(m.preprocess.std[c]) || m.preprocess.std[c] <= 0) bad("a std that is not a positive number");
  }
  if (!std::isfinite(m.cell_pooling) || m.cell_pooling < 0 || m.cell_pooling > 1000)
    bad("cell_pooling " + std::to_string(m.cell_pooling) + " outside 0-1000");
  if (m.members < 1 || m.members > kMaxMembers)
    bad("members " + std::to_string(m.members) + " outside 1-" + std::to_string(kMaxMembers));
}

void save_model(const std::string& path, models::ClassifierImpl& net, const ModelInfo& info) {
  if (info.members != 1) throw std::logic_error(path + ": save_model writes one network; an ensemble is save_ensemble's");
  models::save_safetensors(path, state_of(net, path), {{"fracture", info.to_json().dump()}});
}

void save_ensemble(const std::string& path, const std::vector<models::Classifier>& nets, const ModelInfo& info) {
  if (nets.size() < 2 || info.members != static_cast<int>(nets.size()))
    throw std::logic_error(path + ": an ensemble needs two networks or more, and its description must count them");
  models::TensorMap state;
  for (size_t k = 0; k < nets.size(); ++k) state.merge(state_of(*nets[k], path, member_prefix(static_cast<int>(k))));
  models::save_safetensors(path, state, {{"fracture", info.to_json().dump()}});
}

models::TensorMap average_weights(const std::vector<std::string>& paths) {
  if (paths.empty()) throw std::invalid_argument("average_weights: no model files");
  models::TensorMap sum;  // floating weights summed in float64
  std::map<std::string, torch::ScalarType> dtype;
  for (const auto& path : paths) {
    auto t = models::load_safetensors(path).tensors;
    if (sum.empty()) {
      for (auto& [k, v] : t) {
        dtype[k] = v.scalar_type();
        sum[k] = v.is_floating_point() ? v.to(torch::kFloat64) : v;
      }
      continue;
    }
    if (t.size() != sum.size()) throw std::runtime_error(path + ": holds a different set of weights than " + paths[0]);
    for (auto& [k, v] : sum) {
      auto it = t.find(k);
      if (it == t.end() || !it->second.sizes().equals(v.sizes()))
        throw std::runtime_error(path + ": weight '" + k + "' is missing or has another shape than in " + paths[0]);
      v = v.is_floating_point() ? v.add_(it->second.to(torch::kFloat64)) : it->second;
    }
  }
  for (auto& [k, v] : sum)
    if (v.is_floating_point()) v = (v / static_cast<double>(paths.size())).to(dtype.at(k));
  return sum;
}

LoadedNetworks load_networks(const std::string& path) {
  const std::string bytes = util::read_file(path, kMaxModelBytes);
  if (bytes.size() >= 2 && bytes[0] == 'P' && bytes[1] == 'K')
    throw std::runtime_error(path + ": a PyTorch zip archive (.pth), not a fracture model; trained models are the "
                                    ".safetensors files `fracture train` writes");
  auto contents = models::parse_safetensors(bytes, path);
  auto it = contents.metadata.find("fracture");
  if (it == contents.metadata.end())
    throw std::runtime_error(path + ": not a fracture model (no 'fracture' metadata); ImageNet backbones are "
                                    "loaded with --weights when training");
  LoadedNetworks out;
  out.sha256 = util::sha256_hex(bytes);
  nlohmann::json description;
  try {
    description = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": model description is not JSON (" + e.what() + ")");
  }
  out.info = ModelInfo::from_json(description, path);
  validate_model_info(out.info, path);
  const auto& architecture = models::find_model(out.info.architecture);
  const auto classes = static_cast<int64_t>(out.info.class_names.size());
  for (int k = 0; k < out.info.members; ++k) {
    models::TensorMap weights;
    std::string origin = path;
    if (out.info.members == 1) {
      weights = std::move(contents.tensors);
    } else {  // this member's weights, without its prefix; load_into names any left over or missing
      const std::string prefix = member_prefix(k);
      origin = path + " (member " + std::to_string(k) + ")";
      for (auto t = contents.tensors.begin(); t != contents.tensors.end();)
        if (t->first.rfind(prefix, 0) == 0) {
          weights[t->first.substr(prefix.size())] = std::move(t->second);
          t = contents.tensors.erase(t);
        } else {
          ++t;
        }
    }
    auto net = architecture.build(classes);
    models::load_into(*net, weights, origin);
    net->set_cell_pooling(out.info.cell_pooling);
    net->eval();
    out.nets.push_back(net);
  }
  if (!contents.tensors.empty())
    throw std::runtime_error(path + ": weight '" + contents.tensors.begin()->first + "' belongs to no member of the ensemble");
  return out;
}

LoadedModel load_model(const std::string& path) {
  auto loaded = load_networks(path);
  if (loaded.nets.size() != 1)
    throw std::runtime_error(path + ": an ensemble of " + std::to_string(loaded.nets.size()) +
                             " networks (`fracture ensemble`); this takes a model of one network, such as one of "
                             "its members' run files");
  return {loaded.nets[0], std::move(loaded.info), std::move(loaded.sha256)};
}

}  // namespace fracture::train
