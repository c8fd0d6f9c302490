#include "fracture/train/frozen_features.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>

#include "fracture/data/loader.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/inference.h"
#include "fracture/train/trainer.h"
#include "fracture/util/hash.h"
#include "fracture/util/progress.h"

namespace fs = std::filesystem;

namespace fracture::train {

CachedFeatures extract_features(models::ClassifierImpl& net, int first_trainable,
                                const std::vector<data::Sample>& samples, const data::PreprocessOptions& pre,
                                int workers, torch::Device device, const std::string& what,
                                const std::atomic<bool>* stop, int view, uint64_t seed,
                                const data::AugmentOptions& augment) {
  data::LoaderOptions lo;
  lo.batch_size = 32;
  lo.workers = workers;
  lo.preprocess = pre;
  lo.augment = augment;
  lo.augment.enabled = view > 0;
  lo.seed = util::mix_seed(seed, static_cast<uint64_t>(view), 0x71e3);
  data::DataLoader loader(samples, lo);
  torch::NoGradGuard no_grad;
  net.eval();
  std::vector<torch::Tensor> xs, ys;
  std::vector<size_t> index;
  const bool pooled = first_trainable >= net.num_stages();
  util::Progress bar("caching " + what + " features" + (view > 0 ? " (augmented view " + std::to_string(view) + ")" : ""),
                     static_cast<int64_t>(samples.size()));
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    if (stop && *stop) throw Interrupted();
    if (b->empty()) continue;
    auto f = forward_in_chunks([&](const torch::Tensor& x) { return net.forward_stages(x, 0, first_trainable); },
                               b->images.to(device));
    if (pooled) f = torch::adaptive_avg_pool2d(f, {1, 1}).flatten(1);
    xs.push_back(f.to(torch::kCPU));
    ys.push_back(b->labels);
    index.insert(index.end(), b->indices.begin(), b->indices.end());
    bar.advance(static_cast<int64_t>(b->indices.size()));
  }
  bar.finish();
  if (xs.empty()) throw std::runtime_error("no readable images in the " + what + " set");
  return {torch::cat(xs), torch::cat(ys), pooled, index};
}

std::string feature_cache_key(const TrainOptions& o, const data::PreprocessOptions& pre,
                              const std::vector<data::Sample>& train_set, const std::vector<data::Sample>& val_set) {
  std::error_code ec;
  const auto weights_size = o.weights.empty() ? 0 : fs::file_size(o.weights, ec);
  const auto weights_time =
      o.weights.empty() ? 0 : static_cast<int64_t>(fs::last_write_time(o.weights, ec).time_since_epoch().count());
  std::string key = nlohmann::json{{"model", o.model},
                                   {"weights", o.weights},
                                   {"weights_file", {weights_size, weights_time}},
                                   {"from_scratch", o.from_scratch},
                                   {"freeze", o.freeze.str()},
                                   {"size", pre.size},
                                   {"resize", pre.resize == data::ResizeMode::Stretch},
                                   {"clahe", pre.clahe},
                                   {"mean", pre.mean},
                                   {"std", pre.std},
                                   {"views", o.augment ? o.cache_views : 1},
                                   {"seed", o.seed}}
                        .dump();
  if (pre.standardise) key += "|standardise";  // absent otherwise: earlier caches keep their keys
  if (o.augment && o.augment_kind != AugmentKind::Geometric) key += std::string("|augment ") + to_string(o.augment_kind);
  for (const auto* set : {&train_set, &val_set}) {
    key += "|";
    for (const auto& s : *set) key += s.path + "\t" + std::to_string(s.label) + "\n";
  }
  return util::to_hex(util::fnv1a64(key));
}

namespace {

// The disk cache's features, if the file is there and fits this training set.
std::optional<FeatureSets> load_cached(const std::string& path, bool pooled, size_t train_size) {
  if (!fs::exists(path)) return std::nullopt;
  try {
    auto t = models::load_safetensors(path).tensors;
    FeatureSets f;
    f.train = {t.at("train_x"), t.at("train_y"), pooled};
    f.val = {t.at("val_x"), t.at("val_y"), pooled};
    const auto rows = t.at("train_index").to(torch::kLong).contiguous();
    f.train.index.assign(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
    if (f.train.index.size() != static_cast<size_t>(f.train.y.size(0)))
      throw std::runtime_error("row index and labels differ in length");
    for (size_t r : f.train.index)
      if (r >= train_size) throw std::runtime_error("row index past the training set");
    spdlog::info("reusing cached features {}", path);
    return f;
  } catch (const std::exception& e) {
    spdlog::warn("{}: cached features unusable ({}); computing them again", path, e.what());
    return std::nullopt;
  }
}

}  // namespace

FeatureSets cache_features(models::ClassifierImpl& net, int first_trainable, const TrainOptions& o,
                           const data::PreprocessOptions& pre, const std::vector<data::Sample>& train_set,
                           const std::vector<data::Sample>& val_set, torch::Device device,
                           const std::atomic<bool>* stop) {
  const bool pooled = first_trainable >= net.num_stages();
  const std::string disk = o.out_dir + "/feature_cache_" + feature_cache_key(o, pre, train_set, val_set) + ".safetensors";
  if (o.cache == FeatureCache::Disk)
    if (auto cached = load_cached(disk, pooled, train_set.size())) return std::move(*cached);
  // Augmentation with a cache: several augmented views of every training
  // image are cached, and each epoch draws one view per image.
  FeatureSets f;
  std::vector<torch::Tensor> views;
  for (int v = 0; v < std::max(1, o.augment ? o.cache_views : 1); ++v) {
    f.train = extract_features(net, first_trainable, train_set, pre, o.workers, device, "train", stop, v, o.seed,
                               augment_options(o));
    views.push_back(f.train.x);
  }
  f.train.x = torch::cat(views);
  f.val = extract_features(net, first_trainable, val_set, pre, o.workers, device, "val", stop);
  if (o.cache == FeatureCache::Disk)
    models::save_safetensors(
        disk, {{"train_x", f.train.x},
               {"train_y", f.train.y},
               {"train_index", torch::tensor(std::vector<int64_t>(f.train.index.begin(), f.train.index.end()))},
               {"val_x", f.val.x},
               {"val_y", f.val.y}});
  return f;
}

}  // namespace fracture::train
