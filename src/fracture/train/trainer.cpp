#include "fracture/train/trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>

#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fracture/data/boxes.h"
#include "fracture/data/loader.h"
#include "fracture/eval/metrics.h"
#include "fracture/models/memory_format.h"
#include "fracture/models/name_map.h"
#include "fracture/models/registry.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/validation.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/feature_augment.h"
#include "fracture/train/inference.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/progress.h"

namespace fs = std::filesystem;

namespace fracture::train {
namespace {

// Output of the frozen stages for a list of samples, computed once.
struct Cached {
  torch::Tensor x;       // [n, ...] float32, CPU
  torch::Tensor y;       // [n] int64
  bool pooled = false;   // x is [n, C]: all stages frozen, only the head trains
  std::vector<size_t> index;  // row -> sample (unreadable images have no row)
};

// view 0 is the plain image; views > 0 are seeded random augmentations.
Cached extract_features(models::ClassifierImpl& net, int first_trainable, const std::vector<data::Sample>& samples,
                        const data::PreprocessOptions& pre, int workers, torch::Device device, const std::string& what,
                        const std::atomic<bool>* stop, int view = 0, uint64_t seed = 0) {
  data::LoaderOptions lo;
  lo.batch_size = 32;
  lo.workers = workers;
  lo.preprocess = pre;
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

constexpr const char* kNoBoxes =
    "no fractured training image has boxes (FracAtlas keeps them in <root>/Annotations/YOLO/<stem>.txt, YOLO layouts in labels/<stem>.txt)";

// Box supervision targets for the cached training rows: [n, 1, h, w] masks of
// the feature-map cells that overlap a fracture box, and [n] whether a row's
// target is known (a negative image has no fracture anywhere; a fractured one
// without boxes, or whose label and boxes disagree, has no cell targets).
struct BoxTargets {
  torch::Tensor mask, known;
  int64_t boxed = 0;  // fractured images with boxes
};

// Whether the model's classifier can score single cells (cell pooling needs it).
bool has_linear_head(models::ClassifierImpl& net, torch::Device device) {
  try {
    torch::NoGradGuard g;
    net.cell_logits(torch::zeros({1, net.num_features(), 1, 1}, torch::TensorOptions().device(device)));
    return true;
  } catch (const std::invalid_argument&) {
    return false;
  }
}

BoxTargets box_targets(const std::vector<data::Sample>& samples, const std::vector<size_t>& rows, int64_t h,
                       int64_t w) {
  std::vector<torch::Tensor> masks;
  std::vector<float> known;
  int64_t boxed = 0, positives = 0;
  for (size_t r : rows) {
    const auto& s = samples.at(r);
    const auto read = data::image_boxes(s.path, "gets no box loss");
    const bool ok = read.has_value();
    const std::vector<data::Box> boxes = read.value_or(std::vector<data::Box>{});
    const bool positive = s.label == 1;
    positives += positive;
    boxed += positive && ok && !boxes.empty();
    known.push_back(ok && positive != boxes.empty() ? 1.f : 0.f);
    masks.push_back(data::box_mask(boxes, h, w).unsqueeze(0));
  }
  if (boxed > 0)
    spdlog::info("box supervision: {} of {} fractured training images have boxes, on a {}x{} grid", boxed, positives,
                 h, w);
  return {torch::stack(masks), torch::tensor(known), boxed};
}

// Cross-entropy of each cell's fracture logit against its box mask. Fracture
// cells are about 1% of all cells, so the two kinds each carry half the loss.
torch::Tensor box_loss(const torch::Tensor& cells, const torch::Tensor& target, const torch::Tensor& known) {
  const auto k = known.view({-1, 1, 1, 1}).expand_as(target);
  const auto pos = target * k, neg = (1 - target) * k;
  const auto bce = torch::nn::functional::binary_cross_entropy_with_logits(
      cells, target, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  return 0.5 * (bce * pos).sum() / pos.sum().clamp_min(1) + 0.5 * (bce * neg).sum() / neg.sum().clamp_min(1);
}

double lr_at(int64_t step, int64_t total, int64_t warmup, double base, const std::string& schedule) {
  if (step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == "constant" || total <= warmup) return base;
  const double t = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, std::vector<torch::Tensor> params) {
  if (o.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay).nesterov(o.momentum > 0));
  throw std::invalid_argument("optimizer must be adamw, adam or sgd, not '" + o.optimizer + "'");
}

// Exponential moving average of all weights; evaluation and saving use it.
class Ema {
 public:
  Ema(models::ClassifierImpl& net, double decay) : net_(net), decay_(decay) {
    for (auto& [k, v] : models::module_state(net)) shadow_[k] = v.detach().clone();
  }
  void update() {
    torch::NoGradGuard g;
    for (auto& [k, v] : models::module_state(net_)) {
      auto& s = shadow_.at(k);
      if (v.is_floating_point()) s.mul_(decay_).add_(v.detach(), 1 - decay_);
      else s.copy_(v);
    }
  }
  // Swaps the model's weights with the average (call twice to undo).
  void swap() {
    torch::NoGradGuard g;
    for (auto& [k, v] : models::module_state(net_)) {
      auto tmp = v.detach().clone();
      v.copy_(shadow_.at(k));
      shadow_.at(k).copy_(tmp);
    }
  }
  models::TensorMap& state() { return shadow_; }

 private:
  models::ClassifierImpl& net_;
  double decay_;
  models::TensorMap shadow_;
};

void set_frozen(models::ClassifierImpl& net, int first_trainable) {
  for (int s = 0; s < first_trainable; ++s)
    for (auto& m : net.stage_modules(s)) {
      for (auto& p : m->parameters()) p.set_requires_grad(false);
      m->eval();  // frozen BatchNorm keeps its ImageNet statistics
    }
}

nlohmann::json record_json(const EpochRecord& r) {
  nlohmann::json j = {{"epoch", r.epoch},           {"train_loss", r.train_loss}, {"val_loss", r.val_loss},
          {"val_auc", r.val_auc},       {"val_ap", r.val_ap},         {"lr", r.lr},
          {"seconds", r.seconds},       {"images_per_second", r.images_per_second}};
  if (!r.val_auc_by_source.empty()) j["val_auc_by_source"] = r.val_auc_by_source, j["val_auc_pooled"] = r.val_auc_pooled;
  return j;
}

EpochRecord record_from_json(const nlohmann::json& j) {
  EpochRecord r;
  r.epoch = j.at("epoch");
  r.train_loss = j.at("train_loss");
  r.val_loss = j.at("val_loss");
  r.val_auc = j.at("val_auc");
  r.val_ap = j.at("val_ap");
  r.lr = j.at("lr");
  r.seconds = j.at("seconds");
  r.images_per_second = j.at("images_per_second");
  if (j.contains("val_auc_by_source")) {
    r.val_auc_by_source = j.at("val_auc_by_source").get<std::map<std::string, double>>();
    r.val_auc_pooled = j.at("val_auc_pooled");
  }
  return r;
}

// What cached frozen features depend on: the network and its weights, the
// preprocessing, the views, the seed, and the very images and labels of both
// splits. A change in any of them must not reuse a stale cache.
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
                                   {"freeze", o.freeze},
                                   {"size", pre.size},
                                   {"resize", pre.resize == data::ResizeMode::Stretch},
                                   {"clahe", pre.clahe},
                                   {"mean", pre.mean},
                                   {"std", pre.std},
                                   {"views", o.augment ? o.cache_views : 1},
                                   {"seed", o.seed}}
                        .dump();
  for (const auto* set : {&train_set, &val_set}) {
    key += "|";
    for (const auto& s : *set) key += s.path + "\t" + std::to_string(s.label) + "\n";
  }
  return util::to_hex(util::fnv1a64(key));
}

// Removes state/epoch-NN.* files of epochs other than `keep`.
void remove_state_files_except(const std::string& out_dir, int keep) {
  std::error_code ec;
  const std::string mine = fmt::format("epoch-{:02d}.", keep);
  for (const auto& e : fs::directory_iterator(fs::path(out_dir) / "state", ec))
    if (e.path().filename().string().rfind(mine, 0) != 0) fs::remove(e.path(), ec);
}

nlohmann::json read_state(const std::string& path) {
  try {
    auto st = nlohmann::json::parse(util::read_file(path));
    for (const char* k : {"epochs_done", "best_epoch", "best_val_auc", "history", "recipe"})
      if (!st.contains(k)) throw std::runtime_error(std::string("no '") + k + "'");
    return st;
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot resume from this state record (" + e.what() +
                             "; a run from an older fracture, or damaged): start again with --overwrite");
  }
}

void check_same_recipe(const nlohmann::json& saved, const nlohmann::json& now, const std::string& origin) {
  std::string differences;
  for (auto it = now.begin(); it != now.end(); ++it) {
    const auto old = saved.contains(it.key()) ? saved.at(it.key()) : nlohmann::json();
    if (old != it.value()) differences += fmt::format("\n  {}: {} then, {} now", it.key(), old.dump(), it.value().dump());
  }
  if (!differences.empty())
    throw std::runtime_error(origin + ": --resume with options that change the model; the run was started with" +
                             " other values:" + differences + "\n(resume with the same options, or start a new run)");
}

}  // namespace

void validate_options(const TrainOptions& o) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  auto finite_in = [&](double v, double lo, double hi, const char* flag) {
    need(std::isfinite(v) && v >= lo && v <= hi, fmt::format("{} {}: must be a number from {} to {}", flag, v, lo, hi));
  };
  models::find_model(o.model);  // throws, listing the known models
  first_trainable_stage(o.freeze, 99);
  need(o.image_size == 0 || (o.image_size >= 32 && o.image_size <= 2048),
       fmt::format("--size {}: must be 0 (the model's own) or 32-2048 pixels", o.image_size));
  need(o.epochs >= 1 && o.epochs <= 10000, fmt::format("--epochs {}: must be 1 or more", o.epochs));
  need(o.batch_size >= 1 && o.batch_size <= 4096, fmt::format("--batch-size {}: must be 1-4096", o.batch_size));
  need(o.optimizer == "adamw" || o.optimizer == "adam" || o.optimizer == "sgd", "--optimizer must be adamw, adam or sgd");
  need(std::isfinite(o.lr) && o.lr > 0 && o.lr <= 10, fmt::format("--lr {}: must be a positive number (at most 10)", o.lr));
  finite_in(o.weight_decay, 0, 1, "--weight-decay");
  finite_in(o.momentum, 0, 0.999, "--momentum");
  finite_in(o.warmup_epochs, 0, o.epochs, "--warmup");
  need(o.schedule == "cosine" || o.schedule == "constant", "--schedule must be cosine or constant");
  finite_in(o.label_smoothing, 0, 0.5, "--label-smoothing");
  finite_in(o.mixup, 0, 100, "--mixup");
  need(o.balance == "loss" || o.balance == "sampler" || o.balance == "none", "--balance must be loss, sampler or none");
  finite_in(o.ema_decay, 0, 0.99999, "--ema");
  need(o.average_last >= 0 && o.average_last <= 10000,  // more than --epochs: all epochs are averaged
       fmt::format("--average {}: must be 0 or more", o.average_last));
  finite_in(o.cell_pooling, 0, 1000, "--cell-pooling");
  finite_in(o.box_loss, 0, 1000, "--box-loss");
  parse_source_weights(o.source_weights);
  finite_in(o.clip_grad_norm, 0, 1e6, "--clip-grad");
  need(o.patience >= 0, "--patience must be 0 or more");
  need(o.cache == "ram" || o.cache == "disk" || o.cache == "off", "--cache must be ram, disk or off");
  need(o.cache_views >= 1 && o.cache_views <= 64, fmt::format("--augment-views {}: must be 1-64", o.cache_views));
  need(o.workers >= 1 && o.workers <= 256, fmt::format("--workers {}: must be 1-256", o.workers));
  need(o.threads >= 0 && o.threads <= 1024, fmt::format("--threads {}: must be 0 (all cores) to 1024", o.threads));
  need(o.stop_after_epochs >= 0, "--stop-after must be 0 or more");
  need(!(o.from_scratch && !o.weights.empty()), "--from-scratch and --weights exclude each other");
  need(!(o.resume && o.overwrite), "--resume and --overwrite exclude each other");
  eval::validate_threshold_rule(o.threshold_rule);
  pick_device(o.device);
}

namespace {
// Files a run writes in its folder; one of the first four means a run is there.
const char* const kRunFiles[] = {"best.safetensors", "last.safetensors", "train_state.json", "metrics.jsonl",
                                 "best-epoch.safetensors", "threshold.json", "train_state.pt", "last_raw.safetensors",
                                 "box_head.safetensors"};
}  // namespace

void prepare_run_folder(const TrainOptions& o) {
  const fs::path dir(o.out_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<std::string> found;
  for (int i = 0; i < 4; ++i)
    if (fs::exists(dir / kRunFiles[i])) found.push_back(kRunFiles[i]);
  if (found.empty() || o.resume) return;
  if (!o.overwrite)
    throw std::runtime_error(o.out_dir + " already holds a run (" + found.front() +
                             "): continue it with --resume, replace it with --overwrite, or choose another --out");
  spdlog::warn("--overwrite: removing the run in {}", o.out_dir);
  for (const char* f : kRunFiles) fs::remove(dir / f, ec);
  fs::remove_all(dir / "state", ec);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("epoch-", 0) == 0 && e.path().extension() == ".safetensors") fs::remove(e.path(), ec);
  }
}

nlohmann::json recipe_json(const TrainOptions& o) {
  nlohmann::json j = {{"model", o.model},
          {"weights", o.weights},
          {"from_scratch", o.from_scratch},
          {"freeze", o.freeze},
          {"size", o.image_size},
          {"resize", o.resize == data::ResizeMode::Stretch ? "stretch" : "letterbox"},
          {"clahe", o.clahe},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"optimizer", o.optimizer},
          {"lr", o.lr},
          {"weight_decay", o.weight_decay},
          {"momentum", o.momentum},
          {"warmup", o.warmup_epochs},
          {"schedule", o.schedule},
          {"label_smoothing", o.label_smoothing},
          {"mixup", o.mixup},
          {"balance", o.balance},
          {"ema", o.ema_decay},
          {"average", o.average_last},
          {"cell_pooling", o.cell_pooling},
          {"box_loss", o.box_loss},
          {"clip_grad", o.clip_grad_norm},
          {"patience", o.patience},
          {"augment", o.augment},
          {"cached_features", o.cache != "off"},
          {"feature_augment", o.feature_augment},
          {"augment_views", o.cache_views},
          {"seed", o.seed},
          {"threshold", o.threshold_rule},
          {"manifest_sha256", o.manifest_sha256}};
  if (!o.source_weights.empty()) j["source_weights"] = o.source_weights;  // absent: runs from before it match
  return j;
}

int first_trainable_stage(const std::string& freeze, int num_stages) {
  if (freeze == "head") return num_stages;
  if (freeze == "full") return 0;
  if (freeze.rfind("last:", 0) == 0) {
    const std::string digits = freeze.substr(5);
    if (digits.empty() || digits.size() > 3 || digits.find_first_not_of("0123456789") != std::string::npos)
      throw std::invalid_argument("--freeze " + freeze + ": K in last:K must be a whole number of stages");
    const int k = std::stoi(digits);
    if (k < 0 || k > num_stages) throw std::invalid_argument(fmt::format("--freeze {}: the model has {} stages", freeze, num_stages));
    return num_stages - k;
  }
  throw std::invalid_argument("--freeze must be head, last:K or full, not '" + freeze + "'");
}

TrainResult train(const data::Dataset& dataset, const TrainOptions& o, const std::atomic<bool>* stop) {
  const auto t_start = std::chrono::steady_clock::now();
  validate_options(o);
  prepare_run_folder(o);
  fs::create_directories(o.out_dir);
  if (const int n = util::remove_stale_temporaries(o.out_dir); n > 0)
    spdlog::info("removed {} temporary files left in {} by an earlier run that was killed", n, o.out_dir);
  const std::string state_json = o.out_dir + "/train_state.json";
  auto state_file = [&](int epoch, const char* what) {
    return fmt::format("{}/state/epoch-{:02d}.{}", o.out_dir, epoch, what);
  };
  // A resumed run continues the recipe it started with, or not at all.
  std::optional<nlohmann::json> saved_state;
  if (o.resume && fs::exists(state_json)) {
    saved_state = read_state(state_json);
    check_same_recipe(saved_state->value("recipe", nlohmann::json()), recipe_json(o), state_json);
  } else if (o.resume) {
    spdlog::warn("--resume: no {} yet; starting from the beginning", state_json);
  }
  const auto train_set = dataset.subset("train"), val_set = dataset.subset("val");
  if (train_set.empty() || val_set.empty())
    throw std::runtime_error("the data needs 'train' and 'val' samples: run `fracture split` first or pass a manifest with a split column");
  const int64_t classes = static_cast<int64_t>(dataset.class_names.size());
  if (classes < 2) throw std::runtime_error("need at least two classes");
  if (o.threads > 0) torch::set_num_threads(o.threads);
  torch::manual_seed(o.seed);
  const torch::Device device = pick_device(o.device);

  const auto& spec = models::find_model(o.model);
  if (!o.from_scratch && o.weights.empty() && !spec.imagenet)
    throw std::runtime_error("no ImageNet weights are available for " + o.model +
                             " here: pass a torchvision/timm weights file with --weights, or train from random "
                             "initialisation with --from-scratch");
  models::Classifier net = models::create_model(o.model, {classes, !o.from_scratch && o.weights.empty(), o.weights});
  if (net->num_classes() != classes) net->reset_classifier(classes);
  net->to(device);
  models::use_channels_last_if_it_pays(*net, device);

  data::PreprocessOptions pre;
  pre.size = o.image_size > 0 ? o.image_size : spec.input_size;
  pre.resize = o.resize;
  pre.clahe = o.clahe;
  pre.mean = spec.mean;
  pre.std = spec.std;

  const int stages = net->num_stages();
  const int first = first_trainable_stage(o.freeze, stages);
  const bool use_cache = first > 0 && o.cache != "off";
  set_frozen(*net, first);
  std::vector<torch::Tensor> params;
  for (auto& p : net->parameters())
    if (p.requires_grad()) params.push_back(p);
  int64_t n_trainable = 0;
  for (auto& p : params) n_trainable += p.numel();
  spdlog::info("{}: {} of {} stages frozen, {:.2f}M trainable parameters, {} px, {} on {}", o.model, first, stages,
               n_trainable / 1e6, pre.size, use_cache ? "frozen features cached" : "images streamed", device.str());
  // Cell pooling and box supervision are on by default; where they cannot
  // apply (other data, other settings) training goes on without them and says
  // why, before the features are cached (which takes minutes).
  TrainResult result;
  result.classes = static_cast<int>(classes);
  result.cell_pooling = o.cell_pooling;
  if (result.cell_pooling > 0) {
    std::string why;
    if (classes != 2) why = "it needs two classes";
    else if (first >= stages) why = "--freeze head caches pooled features, not cells";
    else if (!has_linear_head(*net, device)) why = o.model + "'s classifier is not one linear layer";
    if (!why.empty()) {
      spdlog::warn("cell pooling off: {}; the model averages its feature map", why);
      result.cell_pooling = 0;
    }
  }
  net->set_cell_pooling(result.cell_pooling);
  double box_weight = o.box_loss;
  if (box_weight > 0) {
    std::string why;
    if (!use_cache || first >= stages) why = "it needs cached feature maps (--freeze last:K, --cache ram or disk)";
    else if (o.resize != data::ResizeMode::Stretch) why = "--resize letterbox moves the image but not its boxes";
    else if (o.augment && (o.cache_views > 1 || o.feature_augment)) why = "augmented views move the image but not its boxes";
    else if (classes != 2) why = "it needs two classes";
    else if (std::none_of(train_set.begin(), train_set.end(), [](const data::Sample& s) {
               return s.label == 1 && !data::box_file_for(s.path).empty();
             }))
      why = kNoBoxes;
    if (!why.empty()) {
      spdlog::info("box supervision off: {}", why);
      box_weight = 0;
    }
  }
  const bool augment_features = use_cache && o.augment && o.feature_augment && first < stages;
  if (use_cache && o.augment && o.cache_views <= 1 && !augment_features)
    spdlog::info("images are not augmented while frozen features are cached: --augment-views K caches K views "
                 "(K times the caching cost), --feature-augment mirrors and shifts the cached maps, --cache off "
                 "augments at full cost");

  // With averaging, best.safetensors (the model to use) is written once, at
  // the end; the best single epoch is kept beside it.
  const bool averaging = o.average_last > 0;
  const std::string last_path = o.out_dir + "/last.safetensors", model_path = o.out_dir + "/best.safetensors";
  const std::string best_path = averaging ? o.out_dir + "/best-epoch.safetensors" : model_path;

  // Class balance from the training labels.
  std::vector<int64_t> counts(static_cast<size_t>(classes), 0);
  for (const auto& s : train_set) counts.at(static_cast<size_t>(s.label))++;
  torch::Tensor class_weight;
  std::vector<double> sample_weights;
  if (o.balance == "loss") {
    std::vector<float> w;
    for (auto c : counts) w.push_back(c ? static_cast<float>(train_set.size()) / (classes * c) : 0.f);
    class_weight = torch::tensor(w).to(device);
  } else if (o.balance != "sampler" && o.balance != "none") {
    throw std::invalid_argument("--balance must be loss, sampler or none");
  }
  // Sampling weights: balanced classes (--balance sampler) times the
  // sources' weights (--source-weights); none: each image once per epoch.
  const auto source_weight = parse_source_weights(o.source_weights);
  for (const auto& weighted : source_weight) {
    const std::string& name = weighted.first;  // not a structured binding: lambdas cannot capture those in C++17
    if (std::none_of(train_set.begin(), train_set.end(), [&](const auto& s) { return s.source == name; }))
      throw std::invalid_argument("--source-weights: no training image comes from '" + name + "'");
  }
  auto sampling_weight = [&](const data::Sample& s) {
    const auto it = source_weight.find(s.source);
    return (o.balance == "sampler" ? 1.0 / static_cast<double>(counts[static_cast<size_t>(s.label)]) : 1.0) *
           (it == source_weight.end() ? 1.0 : it->second);
  };
  if (o.balance == "sampler" || !source_weight.empty())
    for (const auto& s : train_set) sample_weights.push_back(sampling_weight(s));

  // Frozen-feature cache (or image loaders when streaming).
  Cached train_feat, val_feat;
  std::unique_ptr<data::DataLoader> train_loader, val_loader;
  if (use_cache) {
    const std::string key = feature_cache_key(o, pre, train_set, val_set);
    const std::string disk = o.out_dir + "/feature_cache_" + key + ".safetensors";
    bool cached_on_disk = false;
    if (o.cache == "disk" && fs::exists(disk)) {
      try {
        auto t = models::load_safetensors(disk).tensors;
        train_feat = {t.at("train_x"), t.at("train_y"), first >= stages};
        val_feat = {t.at("val_x"), t.at("val_y"), first >= stages};
        const auto rows = t.at("train_index").to(torch::kLong).contiguous();
        train_feat.index.assign(rows.data_ptr<int64_t>(), rows.data_ptr<int64_t>() + rows.numel());
        if (train_feat.index.size() != static_cast<size_t>(train_feat.y.size(0)))
          throw std::runtime_error("row index and labels differ in length");
        for (size_t r : train_feat.index)
          if (r >= train_set.size()) throw std::runtime_error("row index past the training set");
        cached_on_disk = true;
        spdlog::info("reusing cached features {}", disk);
      } catch (const std::exception& e) {
        spdlog::warn("{}: cached features unusable ({}); computing them again", disk, e.what());
      }
    }
    if (!cached_on_disk) {
      // Augmentation with a cache: several augmented views of every training
      // image are cached, and each epoch draws one view per image.
      std::vector<torch::Tensor> views;
      for (int v = 0; v < std::max(1, o.augment ? o.cache_views : 1); ++v) {
        train_feat = extract_features(*net, first, train_set, pre, o.workers, device, "train", stop, v, o.seed);
        views.push_back(train_feat.x);
      }
      train_feat.x = torch::cat(views);  // [views * n, ...], view-major
      val_feat = extract_features(*net, first, val_set, pre, o.workers, device, "val", stop);
      if (o.cache == "disk")
        models::save_safetensors(disk, {{"train_x", train_feat.x}, {"train_y", train_feat.y},
                                        {"train_index", torch::tensor(std::vector<int64_t>(train_feat.index.begin(), train_feat.index.end()))},
                                        {"val_x", val_feat.x}, {"val_y", val_feat.y}});
    }
    if (!sample_weights.empty()) {  // re-derive weights over the readable samples
      sample_weights.clear();
      for (size_t r : train_feat.index) sample_weights.push_back(sampling_weight(train_set[r]));
    }
  } else {
    data::LoaderOptions lo;
    lo.batch_size = o.batch_size;
    lo.shuffle = true;
    lo.drop_last = train_set.size() > static_cast<size_t>(o.batch_size);
    lo.workers = o.workers;
    lo.seed = o.seed;
    lo.cache = o.image_cache;
    lo.preprocess = pre;
    lo.augment.enabled = o.augment;
    lo.sample_weights = sample_weights;
    train_loader = std::make_unique<data::DataLoader>(train_set, lo);
    lo.shuffle = lo.drop_last = lo.augment.enabled = false;
    lo.sample_weights.clear();
    lo.batch_size = std::max(o.batch_size, 32);
    val_loader = std::make_unique<data::DataLoader>(val_set, lo);
  }
  const int64_t n_train = use_cache ? train_feat.y.size(0) : static_cast<int64_t>(train_set.size());
  const int64_t n_views = use_cache ? train_feat.x.size(0) / n_train : 1;
  // Steps per epoch known before any epoch starts (starting one just to count
  // its batches would decode and throw away the first prefetched batches).
  const int64_t steps_per_epoch_final =
      use_cache ? (n_train + o.batch_size - 1) / o.batch_size : static_cast<int64_t>(train_loader->batches_per_epoch());
  const int64_t total_steps = steps_per_epoch_final * o.epochs;
  const int64_t warmup_steps = static_cast<int64_t>(o.warmup_epochs * steps_per_epoch_final);

  // Box supervision: per-cell fracture log-odds learn which cells the boxes
  // cover - the classifier's own with cell pooling, else those of a separate
  // 1x1 conv that exists only during training (the saved model is the
  // classifier alone). It tells the trainable stages where fractures are,
  // which ~420 image labels say only weakly.
  torch::nn::Conv2d box_head{nullptr};
  BoxTargets boxes;
  if (box_weight > 0) {
    int64_t h = 0, w = 0;
    {
      torch::NoGradGuard g;
      net->eval();
      const auto f = net->forward_stages(train_feat.x.slice(0, 0, 1).to(device), first, stages);
      h = f.size(2);
      w = f.size(3);
    }
    boxes = box_targets(train_set, train_feat.index, h, w);
    result.boxed_images = boxes.boxed;
    if (boxes.boxed == 0) {
      spdlog::warn("box supervision off: {}", kNoBoxes);
      box_weight = 0;
    } else if (result.cell_pooling <= 0) {
      box_head = torch::nn::Conv2d(torch::nn::Conv2dOptions(net->num_features(), 1, 1));
      box_head->to(device);
      for (auto& p : box_head->parameters()) params.push_back(p);
    }
  }

  // The recipe as it ran: options that switched themselves off say so.
  nlohmann::json recipe_as_run = recipe_json(o);
  recipe_as_run["cell_pooling"] = result.cell_pooling;
  recipe_as_run["box_loss"] = box_weight;
  auto optimizer = make_optimizer(o, params);
  std::unique_ptr<Ema> ema;
  if (o.ema_decay > 0) ema = std::make_unique<Ema>(*net, o.ema_decay);

  result.model = model_path;
  result.best_epoch_model = best_path;
  result.last_model = last_path;
  int start_epoch = 0;
  int since_best = 0;
  ModelInfo info;
  info.architecture = o.model;
  info.class_names = dataset.class_names;
  info.preprocess = pre;
  info.cell_pooling = result.cell_pooling;
  // After an epoch's commit: the user's copy of the last model, and no state
  // files that no record names (a killed attempt's, or the epoch before).
  // Done again on resume, as a kill may have come between commit and copy.
  auto after_commit = [&](int epoch) {
    util::write_file_atomic(last_path, util::read_file(state_file(epoch, "model.safetensors")));
    remove_state_files_except(o.out_dir, epoch);
  };
  if (saved_state) {
    // The epoch the state record names, from its own files (see "commit" below).
    const auto& st = *saved_state;
    start_epoch = st.at("epochs_done").get<int>();
    after_commit(start_epoch);
    const std::string model_file = state_file(start_epoch, "model.safetensors");
    models::load_into(*net, models::load_safetensors(model_file).tensors, model_file);
    torch::serialize::InputArchive ar;
    ar.load_from(state_file(start_epoch, "optimizer.pt"));
    optimizer->load(ar);
    if (box_head) {
      const auto t = models::load_safetensors(state_file(start_epoch, "box_head.safetensors")).tensors;
      torch::NoGradGuard g;
      box_head->weight.copy_(t.at("weight"));
      box_head->bias.copy_(t.at("bias"));
    }
    for (const auto& r : st.at("history")) result.history.push_back(record_from_json(r));
    result.best_epoch = st.at("best_epoch").get<int>();
    result.best_val_auc = st.at("best_val_auc").get<double>();
    since_best = st.value("since_best", 0);
    if (ema) {
      // The state's model holds the averaged weights; the raw ones were saved beside them.
      const std::string raw_file = state_file(start_epoch, "raw.safetensors");
      auto raw = models::load_safetensors(raw_file).tensors;
      for (auto& [k, v] : ema->state()) v.copy_(models::module_state(*net).at(k));
      models::load_into(*net, raw, raw_file);
    }
    if (result.best_epoch > 0) {  // the best model so far keeps its threshold
      info = ModelInfo::from_json(st.at("best_info"), state_json);
      result.threshold = info.threshold;
    }
    spdlog::info("resuming {} after epoch {} (best val AUC {:.4f} at epoch {})", o.out_dir, start_epoch,
                 result.best_val_auc, result.best_epoch);
  }

  auto train_mode = [&] {
    net->train();
    set_frozen(*net, first);
  };
  auto forward_trainable = [&](const torch::Tensor& x) {
    if (use_cache && train_feat.pooled) return net->forward_head(x.view({x.size(0), x.size(1), 1, 1}));
    if (use_cache) return net->forward_head(net->forward_stages(x, first, stages));
    return net->forward(x);
  };
  // Training forward: logits, and with box supervision each cell's fracture
  // log-odds ([N, 1, h, w]): the pooled classifier's own with cell pooling,
  // else the separate box head's.
  auto forward_train = [&](const torch::Tensor& x, torch::Tensor& cells) {
    if (box_weight <= 0) return forward_trainable(x);
    const auto f = net->forward_stages(x, first, stages);
    if (box_head) {
      cells = box_head->forward(f);
      return net->forward_head(f);
    }
    const auto d = net->cell_log_odds(f);
    cells = d.unsqueeze(1);
    return net->pool_log_odds(d);
  };
  auto loss_fn = [&](const torch::Tensor& logits, const torch::Tensor& y) {
    auto opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(o.label_smoothing);
    if (class_weight.defined()) opts.weight(class_weight);
    return torch::nn::functional::cross_entropy(logits, y, opts);
  };
  // Validation probabilities (positive class for 2 classes; all columns kept),
  // and each row's source in val_sources.
  std::vector<std::string> val_sources;
  auto validate = [&](double& val_loss) {
    torch::NoGradGuard g;
    net->eval();
    torch::Tensor probs, labels;
    if (use_cache) {
      std::vector<torch::Tensor> ps;
      for (int64_t b = 0; b < val_feat.x.size(0); b += 64)
        ps.push_back(torch::softmax(forward_trainable(val_feat.x.slice(0, b, b + 64).to(device)), 1).to(torch::kCPU));
      probs = torch::cat(ps);
      labels = val_feat.y;
      val_sources.clear();
      for (size_t r : val_feat.index) val_sources.push_back(val_set[r].source);
    } else {
      probs = predict_probabilities(*net, *val_loader, device);
      std::vector<int64_t> ys;
      for (const auto& s : val_set) ys.push_back(s.label);
      labels = torch::tensor(ys);
      auto ok = ~torch::isnan(probs.select(1, 0));
      probs = probs.index({ok});
      labels = labels.index({ok});
      val_sources.clear();
      auto oa = ok.accessor<bool, 1>();
      for (size_t i = 0; i < val_set.size(); ++i)
        if (oa[static_cast<int64_t>(i)]) val_sources.push_back(val_set[i].source);
    }
    val_loss = torch::nll_loss(torch::log(probs.clamp_min(1e-7)), labels).item<double>();
    return std::make_pair(probs, labels);
  };
  auto binary_scores = [&](const torch::Tensor& probs, const torch::Tensor& labels, int positive) {
    std::vector<int> y;
    std::vector<double> p;
    auto pa = probs.accessor<float, 2>();
    auto la = labels.accessor<int64_t, 1>();
    for (int64_t i = 0; i < probs.size(0); ++i) {
      y.push_back(la[i] == positive);
      p.push_back(pa[i][positive]);
    }
    return std::make_pair(y, p);
  };
  // The selection score (validation.h: the mean of the per-source ROC-AUCs).
  auto score = [&](const torch::Tensor& probs, const torch::Tensor& labels) {
    return score_validation(probs, labels, val_sources);
  };
  auto by_source_text = [](const ValidationScore& v) {
    std::string t;
    for (const auto& [source, auc] : v.auc_by_source) t += fmt::format("{} {:.4f}, ", source, auc);
    return t.empty() ? t : fmt::format(" (mean of {}pooled {:.4f})", t, v.pooled_auc);
  };
  // The operating threshold, chosen on these validation probabilities.
  auto set_threshold = [&](ModelInfo& mi, const torch::Tensor& probs, const torch::Tensor& labels, const std::string& what) {
    mi.threshold_rule = "default 0.5";
    mi.threshold = 0.5;
    if (classes == 2) {
      auto [y, p] = binary_scores(probs, labels, 1);
      mi.threshold = eval::choose_threshold(o.threshold_rule, y, p);
      mi.threshold_rule = o.threshold_rule + " on validation, " + what;
    }
  };
  auto snapshot_path = [&](int epoch) { return fmt::format("{}/epoch-{:02d}.safetensors", o.out_dir, epoch); };
  const int first_averaged = std::max(1, o.epochs - o.average_last + 1);

  std::mt19937_64 order_rng(util::mix_seed(o.seed, 0xfeed));
  for (int epoch = start_epoch; epoch < o.epochs; ++epoch) {
    // Every epoch's randomness (order, dropout, augmentation) derives from
    // (seed, epoch) alone, so a resumed run continues exactly as an unbroken one.
    order_rng.seed(util::mix_seed(o.seed, static_cast<uint64_t>(epoch), 0xfeed));
    torch::manual_seed(util::mix_seed(o.seed, static_cast<uint64_t>(epoch), 0xd209));
    train_mode();
    util::Progress bar(fmt::format("epoch {}/{}", epoch + 1, o.epochs), n_train);
    double loss_sum = 0;
    int64_t seen = 0, step = static_cast<int64_t>(epoch) * steps_per_epoch_final;
    double lr = o.lr;
    // rows: the batch's rows of the cached training set (for box targets).
    auto train_step = [&](const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& rows) {
      lr = lr_at(step++, total_steps, warmup_steps, o.lr, o.schedule);
      for (auto& group : optimizer->param_groups()) group.options().set_lr(lr);
      optimizer->zero_grad();
      torch::Tensor loss, cells;  // cells: per-cell log-odds, with box supervision
      torch::Tensor mask, known;  // and their box targets
      if (box_weight > 0) {
        mask = boxes.mask.index_select(0, rows);
        known = boxes.known.index_select(0, rows);
      }
      if (o.mixup > 0 && x.size(0) > 1) {
        // mixup (Zhang et al. 2018): train on convex blends of pairs of inputs
        // (cached feature maps, or images) against the same blend of losses.
        std::gamma_distribution<double> gamma(o.mixup, 1.0);
        const double g1 = gamma(order_rng), g2 = gamma(order_rng), lam = g1 / (g1 + g2);
        auto perm = torch::randperm(x.size(0), torch::kLong);
        auto mixed = (lam * x + (1 - lam) * x.index_select(0, perm)).contiguous(x.suggest_memory_format());
        auto logits = forward_train(mixed.to(device), cells);
        loss = lam * loss_fn(logits, y.to(device)) + (1 - lam) * loss_fn(logits, y.index_select(0, perm).to(device));
        if (cells.defined()) {  // the boxes blend like the images; a cell's target is known if both are
          mask = lam * mask + (1 - lam) * mask.index_select(0, perm);
          known = known * known.index_select(0, perm);
        }
      } else {
        loss = loss_fn(forward_train(x.to(device), cells), y.to(device));
      }
      if (cells.defined()) loss = loss + box_weight * box_loss(cells, mask.to(device), known.to(device));
      loss.backward();
      if (o.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
      optimizer->step();
      if (ema) ema->update();
      loss_sum += loss.item<double>() * static_cast<double>(x.size(0));
      seen += x.size(0);
      bar.advance(x.size(0), fmt::format("loss {:.4f}", loss_sum / static_cast<double>(seen)));
    };
    if (use_cache) {
      std::vector<int64_t> order(static_cast<size_t>(n_train));
      if (!sample_weights.empty()) {
        std::discrete_distribution<int64_t> pick(sample_weights.begin(), sample_weights.end());
        for (auto& i : order) i = pick(order_rng);
      } else {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), order_rng);
      }
      std::vector<int64_t> rows(order.size());
      std::uniform_int_distribution<int64_t> pick_view(0, n_views - 1);
      for (size_t k = 0; k < order.size(); ++k) rows[k] = (n_views > 1 ? pick_view(order_rng) : 0) * n_train + order[k];
      auto idx_all = torch::tensor(order), rows_all = torch::tensor(rows);
      for (int64_t b = 0; b < n_train && !(stop && *stop); b += o.batch_size) {
        const int64_t e = std::min(n_train, b + o.batch_size);
        auto x = train_feat.x.index_select(0, rows_all.slice(0, b, e));
        if (augment_features) x = augment_feature_maps(x);
        const auto rows = idx_all.slice(0, b, e);
        train_step(x, train_feat.y.index_select(0, rows), rows);
      }
    } else {
      train_loader->start_epoch(epoch);
      while (!(stop && *stop)) {
        auto batch = train_loader->next();
        if (!batch) break;
        if (batch->empty()) continue;
        train_step(batch->images, batch->labels, {});
      }
    }
    if (stop && *stop) {
      bar.finish("interrupted");
      result.interrupted = true;
      spdlog::warn("interrupted during epoch {}; {} holds epoch {} - continue with --resume", epoch + 1, last_path,
                   epoch);
      break;
    }
    bar.finish(fmt::format("loss {:.4f}", loss_sum / std::max<double>(1, static_cast<double>(seen))));

    if (ema) ema->swap();  // evaluate and save the averaged weights
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.train_loss = loss_sum / std::max<double>(1, static_cast<double>(seen));
    rec.lr = lr;
    rec.seconds = bar.elapsed_seconds();
    rec.images_per_second = bar.rate();
    auto [probs, labels] = validate(rec.val_loss);
    const ValidationScore v = score(probs, labels);
    rec.val_auc = v.auc;
    rec.val_ap = v.ap;
    rec.val_auc_pooled = v.pooled_auc;
    rec.val_auc_by_source = v.auc_by_source;
    result.history.push_back(rec);
    spdlog::info("epoch {}/{}: train loss {:.4f}, val loss {:.4f}, val ROC-AUC {:.4f}{}, AP {:.4f}, lr {:.2e}, {:.0f} img/s",
                 rec.epoch, o.epochs, rec.train_loss, rec.val_loss, rec.val_auc, by_source_text(v), rec.val_ap, rec.lr,
                 rec.images_per_second);

    const bool improved = result.best_epoch < 0 || rec.val_auc > result.best_val_auc;
    if (improved) {
      result.best_epoch = rec.epoch;
      result.best_val_auc = rec.val_auc;
      since_best = 0;
      set_threshold(info, probs, labels, "epoch " + std::to_string(rec.epoch));
      info.extra = {{"val_roc_auc", rec.val_auc}, {"val_average_precision", rec.val_ap}, {"epoch", rec.epoch},
                    {"train_images", n_train}, {"freeze", o.freeze}, {"seed", o.seed},
                    {"recipe", recipe_as_run}, {"manifest_sha256", o.manifest_sha256}};
      if (!v.auc_by_source.empty())
        info.extra["val_roc_auc_by_source"] = v.auc_by_source, info.extra["val_roc_auc_pooled"] = v.pooled_auc;
      save_model(best_path, *net, info);
      util::crash_point("epoch end: best model written");
      result.threshold = info.threshold;
    } else {
      ++since_best;
    }
    // Commit the epoch. Its files get names of their own (state/epoch-NN.*)
    // and the state record, written last and atomically, names the epoch: a
    // kill at any instant leaves either the previous epoch's record, whose
    // files are all still there, or this one's. Files written before the
    // record (best model, snapshots, metrics) are written again, the same,
    // when the epoch is trained again after a resume.
    ModelInfo last_info = info;
    last_info.extra["epoch"] = rec.epoch;
    save_model(state_file(rec.epoch, "model.safetensors"), *net, last_info);
    util::crash_point("epoch end: state model written");
    if (averaging && rec.epoch >= first_averaged) save_model(snapshot_path(rec.epoch), *net, last_info);
    if (ema) {
      ema->swap();  // back to raw weights for training
      models::TensorMap raw;
      for (auto& [k, v] : models::module_state(*net)) raw[k] = v.detach().to(torch::kCPU);
      models::save_safetensors(state_file(rec.epoch, "raw.safetensors"), raw);
    }
    if (box_head)
      models::save_safetensors(state_file(rec.epoch, "box_head.safetensors"),
                               {{"weight", box_head->weight.detach().to(torch::kCPU)},
                                {"bias", box_head->bias.detach().to(torch::kCPU)}});
    {
      torch::serialize::OutputArchive ar;
      optimizer->save(ar);
      const std::string path = state_file(rec.epoch, "optimizer.pt"), tmp = path + ".tmp." + std::to_string(::getpid());
      ar.save_to(tmp);
      util::crash_point("epoch end: optimizer state written, before its rename");
      fs::rename(tmp, path);
    }
    nlohmann::json hist = nlohmann::json::array();
    std::string jsonl;
    for (const auto& r : result.history) {
      hist.push_back(record_json(r));
      jsonl += record_json(r).dump() + "\n";
    }
    util::write_file_atomic(o.out_dir + "/metrics.jsonl", jsonl);
    util::crash_point("epoch end: metrics written");
    nlohmann::json state{{"epochs_done", rec.epoch},      {"best_epoch", result.best_epoch},
                         {"best_val_auc", result.best_val_auc}, {"since_best", since_best},
                         {"ema", static_cast<bool>(ema)}, {"history", hist},
                         {"recipe", recipe_json(o)}};
    if (result.best_epoch > 0) state["best_info"] = info.to_json();
    util::write_file_atomic(state_json, state.dump(2));  // the commit
    util::crash_point("epoch end: committed");
    after_commit(rec.epoch);
    if (o.stop_after_epochs > 0 && rec.epoch - start_epoch >= o.stop_after_epochs && rec.epoch < o.epochs) {
      spdlog::info("stopping after {} epochs as asked; continue with --resume", o.stop_after_epochs);
      break;
    }
    if (o.patience > 0 && since_best >= o.patience) {
      spdlog::info("early stopping: validation ROC-AUC has not improved for {} epochs", o.patience);
      result.early_stopped = true;
      break;
    }
  }
  result.model_val_auc = result.best_val_auc;
  const bool finished = !result.history.empty() && result.history.back().epoch == o.epochs;
  if (averaging && finished) {
    // Checkpoint averaging: one flatter point at the end of the trajectory,
    // scored once on validation, instead of its luckiest epoch.
    std::vector<std::string> snapshots;
    for (int e = first_averaged; e <= o.epochs; ++e) snapshots.push_back(snapshot_path(e));
    result.averaged = fmt::format("average of epochs {}-{}", first_averaged, o.epochs);
    models::load_into(*net, average_weights(snapshots), result.averaged);
    double val_loss = 0;
    auto [probs, labels] = validate(val_loss);
    const ValidationScore v = score(probs, labels);
    const double val_ap = v.ap;
    result.model_val_auc = v.auc;
    set_threshold(info, probs, labels, result.averaged);
    info.extra = {{"val_roc_auc", result.model_val_auc}, {"val_average_precision", val_ap},
                  {"averaged_epochs", {first_averaged, o.epochs}}, {"best_epoch", result.best_epoch},
                  {"best_epoch_val_roc_auc", result.best_val_auc}, {"train_images", n_train},
                  {"freeze", o.freeze}, {"seed", o.seed}, {"recipe", recipe_as_run},
                  {"manifest_sha256", o.manifest_sha256}};
    if (!v.auc_by_source.empty())
      info.extra["val_roc_auc_by_source"] = v.auc_by_source, info.extra["val_roc_auc_pooled"] = v.pooled_auc;
    save_model(model_path, *net, info);
    result.threshold = info.threshold;
    spdlog::info("{}: val loss {:.4f}, val ROC-AUC {:.4f}{}, AP {:.4f}", result.averaged, val_loss,
                 result.model_val_auc, by_source_text(v), val_ap);
  } else if (averaging && !result.interrupted && result.early_stopped) {
    spdlog::warn("--average {}: training stopped early, so the best epoch is copied to {} instead of an average",
                 o.average_last, model_path);
    util::write_file_atomic(model_path, util::read_file(best_path));
  }
  // Until an averaged run has finished, its best model so far is the best epoch.
  if (averaging && !finished && !result.early_stopped) result.model = best_path;
  if (result.best_epoch > 0) {
    // The operating threshold travels with the model; a copy for people.
    util::write_file_atomic(o.out_dir + "/threshold.json",
                            nlohmann::json{{"model", fs::path(result.model).filename().string()},
                                           {"threshold", result.threshold},
                                           {"rule", info.threshold_rule},
                                           {"val_roc_auc", result.model_val_auc},
                                           {"best_epoch", result.best_epoch},
                                           {"best_epoch_val_roc_auc", result.best_val_auc}}
                                .dump(2));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return result;
}

}  // namespace fracture::train
