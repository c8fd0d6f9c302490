#include "fracture/train/options.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <utility>

#include "fracture/eval/metrics.h"
#include "fracture/models/registry.h"
#include "fracture/train/inference.h"
#include "fracture/train/validation.h"

namespace fracture::train {
namespace {

template <typename Enum, size_t N>
Enum parse_choice(const std::string& text, const char* flag, const std::pair<const char*, Enum> (&choices)[N]) {
  std::string names;  // "a, b or c"
  for (size_t i = 0; i < N; ++i) {
    if (text == choices[i].first) return choices[i].second;
    names += (i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(choices[i].first);
  }
  throw std::invalid_argument(fmt::format("{} must be {}, not '{}'", flag, names, text));
}

template <typename Enum, size_t N>
const char* name_of(Enum value, const std::pair<const char*, Enum> (&choices)[N]) {
  for (const auto& [name, v] : choices)
    if (v == value) return name;
  throw std::logic_error("an option value without a name");
}

constexpr std::pair<const char*, Optimizer> kOptimizers[] = {
    {"adamw", Optimizer::AdamW}, {"adam", Optimizer::Adam}, {"sgd", Optimizer::Sgd}};
constexpr std::pair<const char*, Schedule> kSchedules[] = {{"cosine", Schedule::Cosine}, {"constant", Schedule::Constant}};
constexpr std::pair<const char*, Balance> kBalances[] = {
    {"loss", Balance::Loss}, {"sampler", Balance::Sampler}, {"none", Balance::None}};
constexpr std::pair<const char*, FeatureCache> kCaches[] = {
    {"ram", FeatureCache::Ram}, {"disk", FeatureCache::Disk}, {"off", FeatureCache::Off}};
constexpr std::pair<const char*, AugmentKind> kAugmentKinds[] = {
    {"geometric", AugmentKind::Geometric}, {"intensity", AugmentKind::Intensity}, {"both", AugmentKind::Both}};

}  // namespace

Optimizer parse_optimizer(const std::string& text) { return parse_choice(text, "--optimizer", kOptimizers); }
Schedule parse_schedule(const std::string& text) { return parse_choice(text, "--schedule", kSchedules); }
Balance parse_balance(const std::string& text) { return parse_choice(text, "--balance", kBalances); }
FeatureCache parse_feature_cache(const std::string& text) { return parse_choice(text, "--cache", kCaches); }
AugmentKind parse_augment_kind(const std::string& text) { return parse_choice(text, "--augment-kind", kAugmentKinds); }
const char* to_string(Optimizer v) { return name_of(v, kOptimizers); }
const char* to_string(Schedule v) { return name_of(v, kSchedules); }
const char* to_string(Balance v) { return name_of(v, kBalances); }
const char* to_string(FeatureCache v) { return name_of(v, kCaches); }
const char* to_string(AugmentKind v) { return name_of(v, kAugmentKinds); }

data::AugmentOptions augment_options(const TrainOptions& o) {
  data::AugmentOptions a;
  a.enabled = o.augment;
  a.geometric = o.augment_kind != AugmentKind::Intensity;
  return o.augment_kind == AugmentKind::Geometric ? a : data::with_scanner_intensity(a);
}

Freeze Freeze::parse(const std::string& text) {
  if (text == "head") return {Kind::Head, 0};
  if (text == "full") return {Kind::Full, 0};
  if (text.rfind("last:", 0) == 0) {
    const std::string digits = text.substr(5);
    if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("--freeze " + text + ": K in last:K must be a whole number of stages");
    return {Kind::Last, std::stoi(digits)};
  }
  throw std::invalid_argument("--freeze must be head, last:K or full, not '" + text + "'");
}

std::string Freeze::str() const {
  switch (kind) {
    case Kind::Head: return "head";
    case Kind::Full: return "full";
    case Kind::Last: break;
  }
  return "last:" + std::to_string(last);
}

int Freeze::first_trainable(int num_stages) const {
  switch (kind) {
    case Kind::Head: return num_stages;
    case Kind::Full: return 0;
    case Kind::Last: break;
  }
  if (last < 0 || last > num_stages)
    throw std::invalid_argument(fmt::format("--freeze {}: the model has {} stages", str(), num_stages));
  return num_stages - last;
}

int first_trainable_stage(const std::string& freeze, int num_stages) {
  return Freeze::parse(freeze).first_trainable(num_stages);
}

void validate_options(const TrainOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  auto finite_in = [&](double v, double lo, double hi, const char* flag) {
    need(std::isfinite(v) && v >= lo && v <= hi, fmt::format("{} {}: must be a number from {} to {}", flag, v, lo, hi));
  };
  models::find_model(o.model);  // throws, listing the known models
  Freeze::parse(o.freeze.str());  // a Freeze built by hand is held to the flag's spelling too
  need(o.image_size == 0 || (o.image_size >= 32 && o.image_size <= 2048),
       fmt::format("--size {}: must be 0 (the model's own) or 32-2048 pixels", o.image_size));
  need(o.epochs >= 1 && o.epochs <= 10000, fmt::format("--epochs {}: must be 1 or more", o.epochs));
  need(o.batch_size >= 1 && o.batch_size <= 4096, fmt::format("--batch-size {}: must be 1-4096", o.batch_size));
  need(std::isfinite(o.lr) && o.lr > 0 && o.lr <= 10, fmt::format("--lr {}: must be a positive number (at most 10)", o.lr));
  finite_in(o.weight_decay, 0, 1, "--weight-decay");
  finite_in(o.momentum, 0, 0.999, "--momentum");
  finite_in(o.warmup_epochs, 0, o.epochs, "--warmup");
  finite_in(o.label_smoothing, 0, 0.5, "--label-smoothing");
  finite_in(o.mixup, 0, 100, "--mixup");
  finite_in(o.ema_decay, 0, 0.99999, "--ema");
  need(o.average_last >= 0 && o.average_last <= 10000,  // more than --epochs: all epochs are averaged
       fmt::format("--average {}: must be 0 or more", o.average_last));
  finite_in(o.cell_pooling, 0, 1000, "--cell-pooling");
  finite_in(o.box_loss, 0, 1000, "--box-loss");
  parse_source_weights(o.source_weights);
  finite_in(o.clip_grad_norm, 0, 1e6, "--clip-grad");
  need(o.patience >= 0, "--patience must be 0 or more");
  need(o.cache_views >= 1 && o.cache_views <= 64, fmt::format("--augment-views {}: must be 1-64", o.cache_views));
  need(o.workers >= 1 && o.workers <= 256, fmt::format("--workers {}: must be 1-256", o.workers));
  need(o.threads >= 0 && o.threads <= 1024, fmt::format("--threads {}: must be 0 (all cores) to 1024", o.threads));
  need(o.stop_after_epochs >= 0, "--stop-after must be 0 or more");
  need(!(o.from_scratch && !o.weights.empty()), "--from-scratch and --weights exclude each other");
  need(!(o.resume && o.overwrite), "--resume and --overwrite exclude each other");
  eval::validate_threshold_rule(o.threshold_rule);
  pick_device(o.device);
}

nlohmann::json recipe_json(const TrainOptions& o) {
  nlohmann::json j = {{"model", o.model},
                      {"weights", o.weights},
                      {"from_scratch", o.from_scratch},
                      {"freeze", o.freeze.str()},
                      {"size", o.image_size},
                      {"resize", o.resize == data::ResizeMode::Stretch ? "stretch" : "letterbox"},
                      {"clahe", o.clahe},
                      {"epochs", o.epochs},
                      {"batch_size", o.batch_size},
                      {"optimizer", to_string(o.optimizer)},
                      {"lr", o.lr},
                      {"weight_decay", o.weight_decay},
                      {"momentum", o.momentum},
                      {"warmup", o.warmup_epochs},
                      {"schedule", to_string(o.schedule)},
                      {"label_smoothing", o.label_smoothing},
                      {"mixup", o.mixup},
                      {"balance", to_string(o.balance)},
                      {"ema", o.ema_decay},
                      {"average", o.average_last},
                      {"cell_pooling", o.cell_pooling},
                      {"box_loss", o.box_loss},
                      {"clip_grad", o.clip_grad_norm},
                      {"patience", o.patience},
                      {"augment", o.augment},
                      {"cached_features", o.cache != FeatureCache::Off},
                      {"feature_augment", o.feature_augment},
                      {"augment_views", o.cache_views},
                      {"seed", o.seed},
                      {"threshold", o.threshold_rule},
                      {"manifest_sha256", o.manifest_sha256}};
  if (!o.source_weights.empty()) j["source_weights"] = o.source_weights;  // absent: runs from before it match
  if (o.standardise) j["standardise"] = true;  // likewise
  if (o.augment_kind != AugmentKind::Geometric) j["augment_kind"] = to_string(o.augment_kind);  // the same
  return j;
}

}  // namespace fracture::train
