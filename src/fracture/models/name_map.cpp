#include "fracture/models/name_map.h"

#include <spdlog/spdlog.h>

#include <regex>
#include <set>
#include <stdexcept>

#include "fracture/models/efficientnet.h"

namespace fracture::models {
namespace {

bool has(const TensorMap& m, const std::string& key) { return m.count(key) > 0; }

// One EfficientNet tensor name, ours -> theirs.
std::string efficientnet_name(const std::string& ours, WeightNaming naming, const std::vector<BlockLayout>& layout,
                              int num_block_stages) {
  static const std::regex block_re(R"(blocks\.(\d+)\.(\d+)\.(expand|dw|se|project)\.(conv|bn|reduce|expand)\.(.+))");
  static const std::regex top_re(R"((stem|head)\.(conv|bn)\.(.+))");
  std::smatch m;
  const bool tv = naming == WeightNaming::Torchvision, timm = naming == WeightNaming::Timm;
  if (ours.rfind("classifier.", 0) == 0) {
    const std::string leaf = ours.substr(11);
    return tv ? "classifier.1." + leaf : timm ? ours : "_fc." + leaf;
  }
  if (std::regex_match(ours, m, top_re)) {
    const bool stem = m[1] == "stem", conv = m[2] == "conv";
    const std::string leaf = m[3];
    if (tv) return "features." + std::to_string(stem ? 0 : num_block_stages + 1) + (conv ? ".0." : ".1.") + leaf;
    if (timm) return std::string(conv ? (stem ? "conv_stem." : "conv_head.") : (stem ? "bn1." : "bn2.")) + leaf;
    return std::string(conv ? (stem ? "_conv_stem." : "_conv_head.") : (stem ? "_bn0." : "_bn1.")) + leaf;
  }
  if (!std::regex_match(ours, m, block_re)) throw std::runtime_error("no EfficientNet name mapping for '" + ours + "'");
  const int s = std::stoi(m[1]), b = std::stoi(m[2]);
  const std::string part = m[3], sub = m[4], leaf = m[5];
  const BlockLayout* blk = nullptr;
  for (const auto& l : layout)
    if (l.stage == s && l.index == b) blk = &l;
  if (!blk) throw std::runtime_error("no block " + std::to_string(s) + "." + std::to_string(b));

  if (tv) {
    // torchvision: features.<stage+1>.<index>.block.<i>, the i-th present part.
    const int dw_i = blk->has_expand ? 1 : 0;
    int i = part == "expand" ? 0 : part == "dw" ? dw_i : part == "se" ? dw_i + 1 : dw_i + (blk->has_se ? 2 : 1);
    std::string tail = sub == "conv" ? "0." : sub == "bn" ? "1." : sub == "reduce" ? "fc1." : "fc2.";
    return "features." + std::to_string(s + 1) + "." + std::to_string(b) + ".block." + std::to_string(i) + "." + tail + leaf;
  }
  if (timm) {
    const std::string p = "blocks." + std::to_string(s) + "." + std::to_string(b) + ".";
    if (part == "se") return p + (sub == "reduce" ? "se.conv_reduce." : "se.conv_expand.") + leaf;
    const bool conv = sub == "conv";
    if (!blk->has_expand) {  // timm's DepthwiseSeparableConv
      if (part == "dw") return p + (conv ? "conv_dw." : "bn1.") + leaf;
      return p + (conv ? "conv_pw." : "bn2.") + leaf;
    }
    if (part == "expand") return p + (conv ? "conv_pw." : "bn1.") + leaf;
    if (part == "dw") return p + (conv ? "conv_dw." : "bn2.") + leaf;
    return p + (conv ? "conv_pwl." : "bn3.") + leaf;
  }
  const std::string p = "_blocks." + std::to_string(blk->flat) + ".";
  if (part == "se") return p + (sub == "reduce" ? "_se_reduce." : "_se_expand.") + leaf;
  const bool conv = sub == "conv";
  if (part == "expand") return p + (conv ? "_expand_conv." : "_bn0.") + leaf;
  if (part == "dw") return p + (conv ? "_depthwise_conv." : "_bn1.") + leaf;
  return p + (conv ? "_project_conv." : "_bn2.") + leaf;
}

// Checkpoints saved from DataParallel prefix every key with "module.".
TensorMap strip_module_prefix(const TensorMap& tensors) {
  TensorMap out;
  for (const auto& [k, v] : tensors) out[k.rfind("module.", 0) == 0 ? k.substr(7) : k] = v;
  return out;
}

bool is_bn_counter(const std::string& name) {
  return name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0;
}

}  // namespace

std::string naming_name(WeightNaming n) {
  switch (n) {
    case WeightNaming::Fracture: return "fracture";
    case WeightNaming::Torchvision: return "torchvision";
    case WeightNaming::Timm: return "timm";
    case WeightNaming::Lukemelas: return "lukemelas";
  }
  return "?";
}

WeightNaming parse_naming(const std::string& name) {
  for (auto n : {WeightNaming::Fracture, WeightNaming::Torchvision, WeightNaming::Timm, WeightNaming::Lukemelas})
    if (naming_name(n) == name) return n;
  throw std::invalid_argument("unknown weight naming '" + name + "' (fracture, torchvision, timm, lukemelas)");
}

WeightNaming detect_naming(const TensorMap& t, const std::string& origin) {
  if (has(t, "_conv_stem.weight")) return WeightNaming::Lukemelas;
  if (has(t, "conv_stem.weight")) return WeightNaming::Timm;
  if (has(t, "features.0.0.weight")) return WeightNaming::Torchvision;  // torchvision EfficientNet
  if (has(t, "stem.conv.weight")) return WeightNaming::Fracture;
  // ResNet and VGG use torchvision's names as ours.
  if (has(t, "conv1.weight") || has(t, "features.0.weight")) return WeightNaming::Fracture;
  throw std::runtime_error(origin + ": cannot tell whose parameter names these are (first key: '" +
                           (t.empty() ? std::string("<none>") : t.begin()->first) + "')");
}

std::vector<std::pair<std::string, std::string>> name_pairs(ClassifierImpl& model, WeightNaming naming) {
  std::vector<std::pair<std::string, std::string>> out;
  auto* eff = dynamic_cast<EfficientNetImpl*>(&model);
  if (!eff && naming == WeightNaming::Lukemelas)
    throw std::runtime_error("lukemelas naming exists only for EfficientNet");
  std::vector<BlockLayout> layout;
  if (eff) layout = eff->layout();
  const int stages = eff ? eff->num_stages() - 2 : 0;
  for (const auto& [ours, _] : module_state(model)) {
    if (!eff || naming == WeightNaming::Fracture) {
      out.emplace_back(ours, ours);
    } else {
      out.emplace_back(ours, efficientnet_name(ours, naming, layout, stages));
    }
  }
  return out;
}

TensorMap to_our_names(ClassifierImpl& model, const TensorMap& theirs, WeightNaming naming) {
  TensorMap remaining = theirs;
  TensorMap out;
  for (const auto& [ours, their] : name_pairs(model, naming)) {
    auto it = remaining.find(their);
    if (it == remaining.end()) continue;
    out[ours] = it->second;
    remaining.erase(it);
  }
  for (auto& [k, v] : remaining) out.emplace(k, v);  // reported as unexpected later
  return out;
}

TensorMap to_their_names(ClassifierImpl& model, WeightNaming naming) {
  const TensorMap state = module_state(model);
  TensorMap out;
  for (const auto& [ours, their] : name_pairs(model, naming)) out[their] = state.at(ours);
  return out;
}

LoadReport load_into(ClassifierImpl& model, const TensorMap& given, const std::string& origin) {
  LoadReport r;
  const TensorMap source = strip_module_prefix(given);
  std::vector<std::string> bad_shape, bad_dtype, non_finite;
  const std::string head = model.classifier_prefix();
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& [name, target] : module_state(model)) {
    auto it = source.find(name);
    if (it == source.end()) {
      if (!is_bn_counter(name)) r.missing.push_back(name);
      continue;
    }
    used.insert(name);
    if (it->second.sizes() != target.sizes()) {
      if (name.rfind(head, 0) == 0) {
        r.reinitialised.push_back(name);
      } else {
        bad_shape.push_back(name + " (file " + c10::str(it->second.sizes()) + ", model " + c10::str(target.sizes()) + ")");
      }
      continue;
    }
    // A float weight stored as integers (or the reverse) would be converted
    // value by value into a different network: refuse it.
    if (it->second.is_floating_point() != target.is_floating_point()) {
      bad_dtype.push_back(name + " (file " + std::string(c10::toString(it->second.scalar_type())) + ", model " +
                          std::string(c10::toString(target.scalar_type())) + ")");
      continue;
    }
    if (it->second.is_floating_point() && !torch::isfinite(it->second).all().item<bool>()) {
      non_finite.push_back(name);
      continue;
    }
    target.copy_(it->second.to(target.dtype()));
    r.loaded.push_back(name);
  }
  for (const auto& [k, _] : source)
    if (!used.count(k)) r.unexpected.push_back(k);
  // A missing classifier is fine for a backbone-only file: the head stays fresh.
  std::vector<std::string> missing_body;
  for (const auto& m : r.missing) (m.rfind(head, 0) == 0 ? r.reinitialised : missing_body).push_back(m);
  r.missing = missing_body;
  if (!bad_shape.empty() || !r.missing.empty() || !bad_dtype.empty() || !non_finite.empty()) {
    std::string msg = origin + ": does not fit this model:";
    for (size_t i = 0; i < bad_shape.size() && i < 5; ++i) msg += "\n  shape mismatch " + bad_shape[i];
    for (size_t i = 0; i < bad_dtype.size() && i < 5; ++i) msg += "\n  wrong kind of number " + bad_dtype[i];
    for (size_t i = 0; i < non_finite.size() && i < 5; ++i) msg += "\n  NaN or infinite values in " + non_finite[i];
    for (size_t i = 0; i < r.missing.size() && i < 5; ++i) msg += "\n  missing " + r.missing[i];
    const size_t more = bad_shape.size() + r.missing.size() + bad_dtype.size() + non_finite.size();
    if (more > 10) msg += "\n  ... " + std::to_string(more) + " problems in all";
    throw std::runtime_error(msg);
  }
  if (!r.unexpected.empty())
    spdlog::warn("{}: {} tensors not used by the model (first: {})", origin, r.unexpected.size(), r.unexpected.front());
  return r;
}

LoadReport load_weights_file(ClassifierImpl& model, const std::string& path) {
  const TensorMap stripped = strip_module_prefix(load_tensor_file(path));
  const WeightNaming naming = detect_naming(stripped, path);
  return load_into(model, to_our_names(model, stripped, naming), path);
}

}  // namespace fracture::models
