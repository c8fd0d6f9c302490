#include "fracture/train/trainer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
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
#include "fracture/train/box_supervision.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/distributed.h"
#include "fracture/train/feature_augment.h"
#include "fracture/train/frozen_features.h"
#include "fracture/train/inference.h"
#include "fracture/train/validation.h"
#include "fracture/train/weight_ema.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/progress.h"
#include "fracture/util/runtime.h"

namespace fs = std::filesystem;

namespace fracture::train {
namespace {

double lr_at(int64_t step, int64_t total, int64_t warmup, double base, Schedule schedule) {
  if (step < warmup) return base * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == Schedule::Constant || total <= warmup) return base;
  const double t = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
  return base * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainOptions& o, std::vector<torch::Tensor> params) {
  switch (o.optimizer) {
    case Optimizer::AdamW:
      return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
    case Optimizer::Adam:
      return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
    case Optimizer::Sgd:
      break;
  }
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(o.weight_decay).nesterov(o.momentum > 0));
}

void set_frozen(models::ClassifierImpl& net, int first_trainable) {
  for (int s = 0; s < first_trainable; ++s)
    for (auto& m : net.stage_modules(s)) {
      for (auto& p : m->parameters()) p.set_requires_grad(false);
      m->eval();  // frozen BatchNorm keeps its ImageNet statistics
    }
}

// " (mean of A 0.9, B 0.8, pooled 0.85)" with several sources, else "".
std::string by_source_text(const ValidationScore& v) {
  std::string t;
  for (const auto& [source, auc] : v.auc_by_source) t += fmt::format("{} {:.4f}, ", source, auc);
  return t.empty() ? t : fmt::format(" (mean of {}pooled {:.4f})", t, v.pooled_auc);
}

// With ranks: rank 0's weights and buffers into every replica.
void broadcast_weights(Communicator& comm, models::ClassifierImpl& net) {
  std::vector<torch::Tensor> state;
  for (auto& [name, t] : models::module_state(net)) state.push_back(t);
  comm.broadcast(state);
}

// ---------------------------------------------------------------------------
// Phase 1: the plan. Options checked, the run folder ready, a resumed run's
// state read (and its recipe matched), the splits and the device.
struct RunPlan {
  std::vector<data::Sample> train_set, val_set;
  int64_t classes = 0;
  std::vector<std::string> class_names;  // label -> name
  torch::Device device{torch::kCPU};
  std::optional<nlohmann::json> saved_state;  // with --resume, once an epoch has been committed
  Communicator* comm = nullptr;  // data-parallel: the other ranks (distributed.h); null alone
  bool writer = true;            // this process writes the run's files (alone, or rank 0)
  util::Machine machine;         // a seed's weights are bit-identical on CPUs of one kind only
};

RunPlan plan_run(const data::Dataset& dataset, const TrainOptions& o, const RunFolder& folder, Communicator* comm) {
  validate_options(o);
  RunPlan plan;
  plan.comm = comm;
  plan.writer = !comm || comm->rank() == 0;
  if (plan.writer) {
    prepare_run_folder(o);
    fs::create_directories(o.out_dir);
    if (const int n = util::remove_stale_temporaries(o.out_dir); n > 0)
      spdlog::info("removed {} temporary files left in {} by an earlier run that was killed", n, o.out_dir);
  }
  if (comm) comm->barrier();  // the folder is ready before any rank reads it
  // A resumed run continues the recipe it started with, or not at all.
  if (o.resume && fs::exists(folder.state_record())) plan.saved_state = folder.read_state(recipe_json(o));
  else if (o.resume) spdlog::warn("--resume: no {} yet; starting from the beginning", folder.state_record());
  plan.train_set = dataset.subset("train");
  plan.val_set = dataset.subset("val");
  if (plan.train_set.empty() || plan.val_set.empty())
    throw std::runtime_error("the data needs 'train' and 'val' samples: run `fracture split` first or pass a manifest with a split column");
  plan.classes = static_cast<int64_t>(dataset.class_names.size());
  plan.class_names = dataset.class_names;
  if (plan.classes < 2) throw std::runtime_error("need at least two classes");
  if (o.threads > 0) torch::set_num_threads(o.threads);
  plan.machine = util::describe_machine();
  if (plan.writer) spdlog::info("machine: {}", plan.machine.str());
  torch::manual_seed(o.seed);  // before the new head is initialised
  plan.device = pick_device(o.device);
  return plan;
}

// ---------------------------------------------------------------------------
// Phase 2: the model and what trains. Cell pooling and box supervision are on
// by default; where they cannot apply (other data, other settings) training
// goes on without them and says why, before the features are cached (which
// takes minutes).
struct TrainableModel {
  models::Classifier net{nullptr};
  data::PreprocessOptions pre;
  int stages = 0, first = 0;  // first: the first trainable stage
  bool use_cache = false;     // the frozen stages' output is cached
  bool augment_features = false;
  std::vector<torch::Tensor> params;  // what the optimiser moves
  double cell_pooling = 0;            // as it runs
  double box_weight = 0;              // as it runs
};

std::string why_no_cell_pooling(const TrainableModel& m, const TrainOptions& o, int64_t classes, torch::Device device) {
  if (classes != 2) return "it needs two classes";
  if (m.first >= m.stages) return "--freeze head caches pooled features, not cells";
  if (!has_linear_head(*m.net, device)) return o.model + "'s classifier is not one linear layer";
  return "";
}

std::string why_no_box_supervision(const TrainableModel& m, const TrainOptions& o, const RunPlan& plan) {
  if (!m.use_cache || m.first >= m.stages) return "it needs cached feature maps (--freeze last:K, --cache ram or disk)";
  if (o.resize != data::ResizeMode::Stretch) return "--resize letterbox moves the image but not its boxes";
  if (o.augment && o.feature_augment) return "--feature-augment moves the feature maps but not the boxes";
  if (o.augment && o.cache_views > 1 && o.augment_kind != AugmentKind::Intensity)
    return "augmented views move the image but not its boxes (--augment-kind intensity keeps them)";
  if (plan.classes != 2) return "it needs two classes";
  if (std::none_of(plan.train_set.begin(), plan.train_set.end(), [](const data::Sample& s) {
        return s.label == 1 && !data::box_file_for(s.path).empty();
      }))
    return kNoBoxes;
  return "";
}

TrainableModel build_model(const RunPlan& plan, const TrainOptions& o) {
  const auto& spec = models::find_model(o.model);
  if (!o.from_scratch && o.weights.empty() && !spec.imagenet)
    throw std::runtime_error("no ImageNet weights are available for " + o.model +
                             " here: pass a torchvision/timm weights file with --weights, or train from random "
                             "initialisation with --from-scratch");
  TrainableModel m;
  m.net = models::create_model(o.model, {plan.classes, !o.from_scratch && o.weights.empty(), o.weights});
  if (m.net->num_classes() != plan.classes) m.net->reset_classifier(plan.classes);
  m.net->to(plan.device);
  models::use_channels_last_if_it_pays(*m.net, plan.device);
  if (plan.comm) broadcast_weights(*plan.comm, *m.net);  // every replica starts from rank 0's (its new head included)
  m.pre.size = o.image_size > 0 ? o.image_size : spec.input_size;
  m.pre.resize = o.resize;
  m.pre.clahe = o.clahe;
  m.pre.standardise = o.standardise;
  m.pre.mean = spec.mean;
  m.pre.std = spec.std;

  m.stages = m.net->num_stages();
  m.first = o.freeze.first_trainable(m.stages);
  m.use_cache = m.first > 0 && o.cache != FeatureCache::Off;
  set_frozen(*m.net, m.first);
  for (auto& p : m.net->parameters())
    if (p.requires_grad()) m.params.push_back(p);
  int64_t n_trainable = 0;
  for (auto& p : m.params) n_trainable += p.numel();
  spdlog::info("{}: {} of {} stages frozen, {:.2f}M trainable parameters, {} px, {} on {}", o.model, m.first, m.stages,
               n_trainable / 1e6, m.pre.size, m.use_cache ? "frozen features cached" : "images streamed",
               plan.device.str());

  m.cell_pooling = o.cell_pooling;
  if (m.cell_pooling > 0)
    if (const auto why = why_no_cell_pooling(m, o, plan.classes, plan.device); !why.empty()) {
      spdlog::warn("cell pooling off: {}; the model averages its feature map", why);
      m.cell_pooling = 0;
    }
  m.net->set_cell_pooling(m.cell_pooling);
  m.box_weight = o.box_loss;
  if (m.box_weight > 0)
    if (const auto why = why_no_box_supervision(m, o, plan); !why.empty()) {
      spdlog::info("box supervision off: {}", why);
      m.box_weight = 0;
    }
  m.augment_features = m.use_cache && o.augment && o.feature_augment && m.first < m.stages;
  if (m.use_cache && o.augment && o.cache_views <= 1 && !m.augment_features)
    spdlog::info("images are not augmented while frozen features are cached: --augment-views K caches K views "
                 "(K times the caching cost), --feature-augment mirrors and shifts the cached maps, --cache off "
                 "augments at full cost");
  return m;
}

// ---------------------------------------------------------------------------
// Phase 3: the data. Class balance, sampling weights, and either the cached
// frozen features or image loaders.
struct TrainingData {
  torch::Tensor class_weight;          // --balance loss
  std::vector<double> sample_weights;  // per training row; empty: each once per epoch
  // This process's part of each split: all of it alone, a rank's shard
  // (sample index % ranks == rank) in data-parallel training.
  std::vector<data::Sample> train_part, val_part;
  FeatureSets features;                // with the cache, of the parts
  // The epoch order runs over n_train items (cached rows alone; the training
  // set's samples with ranks, so that every rank draws the same order);
  // local_row[item]: its row in features.train, -1 when another rank has it.
  std::vector<int64_t> local_row;
  std::unique_ptr<data::DataLoader> train_loader, val_loader;  // without the cache
  int64_t n_train = 0, n_views = 1;
  int64_t steps_per_epoch = 0, total_steps = 0, warmup_steps = 0;
};

TrainingData prepare_data(const RunPlan& plan, TrainableModel& m, const TrainOptions& o,
                          const std::atomic<bool>* stop) {
  const auto& train_set = plan.train_set;
  TrainingData d;
  std::vector<int64_t> counts(static_cast<size_t>(plan.classes), 0);
  for (const auto& s : train_set) counts.at(static_cast<size_t>(s.label))++;
  if (o.balance == Balance::Loss) {
    std::vector<float> w;
    for (auto c : counts) w.push_back(c ? static_cast<float>(train_set.size()) / (plan.classes * c) : 0.f);
    d.class_weight = torch::tensor(w).to(plan.device);
  }
  // Sampling weights: balanced classes (--balance sampler) times the
  // sources' (or a source's class's) weights (--source-weights); none: each
  // image once per epoch.
  const auto source_weight = parse_source_weights(o.source_weights);
  auto key_of = [&](const data::Sample& s, bool with_class) {
    return with_class ? source_class_key(s.source, plan.class_names.at(static_cast<size_t>(s.label))) : s.source;
  };
  for (const auto& weighted : source_weight) {
    const std::string& key = weighted.first;  // not a structured binding: lambdas cannot capture those in C++17
    const bool with_class = key.find('/') != std::string::npos;
    if (std::none_of(train_set.begin(), train_set.end(), [&](const auto& s) { return key_of(s, with_class) == key; }))
      throw std::invalid_argument("--source-weights: no training image comes from '" + key + "'" +
                                  (with_class ? " (SOURCE/CLASS)" : ""));
  }
  const bool weighted = o.balance == Balance::Sampler || !source_weight.empty();
  auto sampling_weight = [&](const data::Sample& s) {
    return (o.balance == Balance::Sampler ? 1.0 / static_cast<double>(counts[static_cast<size_t>(s.label)]) : 1.0) *
           source_weight_of(source_weight, s.source, plan.class_names.at(static_cast<size_t>(s.label)));
  };

  // The shards: each rank reads (and caches) its own samples only.
  auto mine = [&](size_t i) {
    return !plan.comm || static_cast<int>(i % static_cast<size_t>(plan.comm->size())) == plan.comm->rank();
  };
  std::vector<size_t> train_global;  // train_part[j] is train_set[train_global[j]]
  for (size_t i = 0; i < train_set.size(); ++i)
    if (mine(i)) {
      train_global.push_back(i);
      d.train_part.push_back(train_set[i]);
    }
  for (size_t i = 0; i < plan.val_set.size(); ++i)
    if (mine(i)) d.val_part.push_back(plan.val_set[i]);

  if (m.use_cache) {
    d.features = cache_features(*m.net, m.first, o, m.pre, d.train_part, d.val_part, plan.device, stop);
    const int64_t rows = d.features.train.y.size(0);
    if (!plan.comm) {  // the order runs over the readable samples, the cache's rows
      if (weighted)
        for (size_t r : d.features.train.index) d.sample_weights.push_back(sampling_weight(train_set[r]));
      d.local_row.resize(static_cast<size_t>(rows));
      std::iota(d.local_row.begin(), d.local_row.end(), 0);
    } else {  // over every training sample, the same on every rank
      if (weighted)
        for (const auto& s : train_set) d.sample_weights.push_back(sampling_weight(s));
      d.local_row.assign(train_set.size(), -1);
      for (int64_t r = 0; r < rows; ++r) d.local_row[train_global[d.features.train.index[static_cast<size_t>(r)]]] = r;
    }
    d.n_train = static_cast<int64_t>(d.local_row.size());
    d.n_views = d.features.train.x.size(0) / rows;
    d.steps_per_epoch = (d.n_train + o.batch_size - 1) / o.batch_size;
  } else {
    if (weighted)
      for (const auto& s : train_set) d.sample_weights.push_back(sampling_weight(s));
    data::LoaderOptions lo;
    lo.batch_size = o.batch_size;
    lo.shuffle = true;
    lo.drop_last = train_set.size() > static_cast<size_t>(o.batch_size);
    lo.workers = o.workers;
    lo.seed = o.seed;
    lo.cache = o.image_cache;
    lo.preprocess = m.pre;
    lo.augment = augment_options(o);
    lo.sample_weights = d.sample_weights;
    if (plan.comm) lo.shard_rank = plan.comm->rank(), lo.shard_count = plan.comm->size();
    d.train_loader = std::make_unique<data::DataLoader>(train_set, lo);
    lo.shuffle = lo.drop_last = lo.augment.enabled = false;
    lo.sample_weights.clear();
    lo.shard_rank = 0, lo.shard_count = 1;
    lo.batch_size = std::max(o.batch_size, 32);
    d.val_loader = std::make_unique<data::DataLoader>(d.val_part, lo);
    d.n_train = static_cast<int64_t>(train_set.size());
    // Known before any epoch starts (starting one just to count its batches
    // would decode and throw away the first prefetched batches).
    d.steps_per_epoch = static_cast<int64_t>(d.train_loader->batches_per_epoch());
  }
  d.total_steps = d.steps_per_epoch * o.epochs;
  d.warmup_steps = static_cast<int64_t>(o.warmup_epochs * d.steps_per_epoch);
  return d;
}

// ---------------------------------------------------------------------------
// Phase 4: box supervision's targets for the cached training rows, and the
// separate box head when the classifier does not pool cells.
struct BoxSupervision {
  BoxTargets targets;
  torch::nn::Conv2d head{nullptr};
};

BoxSupervision prepare_box_supervision(const RunPlan& plan, TrainableModel& m, const TrainingData& d) {
  BoxSupervision b;
  if (m.box_weight <= 0) return b;
  int64_t h = 0, w = 0;
  {
    torch::NoGradGuard g;
    m.net->eval();
    const auto f = m.net->forward_stages(d.features.train.x.slice(0, 0, 1).to(plan.device), m.first, m.stages);
    h = f.size(2);
    w = f.size(3);
  }
  b.targets = box_targets(d.train_part, d.features.train.index, h, w);
  if (plan.comm) {  // every rank decides alike, on the boxes of all shards
    const auto boxed = torch::tensor({static_cast<float>(b.targets.boxed)});
    plan.comm->all_reduce_sum({boxed});
    b.targets.boxed = static_cast<int64_t>(boxed.item<float>());
  }
  if (b.targets.boxed == 0) {
    spdlog::warn("box supervision off: {}", kNoBoxes);
    m.box_weight = 0;
  } else if (m.cell_pooling <= 0) {
    b.head = torch::nn::Conv2d(torch::nn::Conv2dOptions(m.net->num_features(), 1, 1));
    b.head->to(plan.device);
    for (auto& p : b.head->parameters()) m.params.push_back(p);
  }
  return b;
}

// Validation probabilities ([n, classes], every column), their labels, and
// each row's source.
struct ValidationOutput {
  torch::Tensor probs, labels;
  std::vector<std::string> sources;
  double loss = 0;
};

// ---------------------------------------------------------------------------
// Phases 5-7: the epochs of one run, from the prepared model and data.
class EpochLoop {
 public:
  EpochLoop(const data::Dataset& dataset, const TrainOptions& o, const RunFolder& folder, RunPlan& plan,
            TrainableModel& m, TrainingData& d, BoxSupervision& boxes, const std::atomic<bool>* stop)
      : o_(o), folder_(folder), plan_(plan), m_(m), d_(d), boxes_(boxes), stop_(stop) {
    // The recipe as it ran: options that switched themselves off say so.
    recipe_as_run_ = recipe_json(o);
    recipe_as_run_["cell_pooling"] = m.cell_pooling;
    recipe_as_run_["box_loss"] = m.box_weight;
    optimizer_ = make_optimizer(o, m.params);
    if (o.ema_decay > 0) ema_ = std::make_unique<WeightEma>(*m.net, o.ema_decay);
    result_.classes = static_cast<int>(plan.classes);
    result_.cell_pooling = m.cell_pooling;
    result_.boxed_images = boxes.targets.boxed;
    result_.model = folder.model();
    result_.best_epoch_model = folder.best_epoch_model();
    result_.last_model = folder.last_model();
    info_.architecture = o.model;
    info_.class_names = dataset.class_names;
    info_.preprocess = m.pre;
    info_.cell_pooling = m.cell_pooling;
    first_averaged_ = std::max(1, o.epochs - o.average_last + 1);
    if (plan.comm)
      for (int stage = m.first; stage < m.stages; ++stage)
        for (auto& module : m.net->stage_modules(stage))
          for (auto& buffer : module->buffers()) trainable_buffers_.push_back(buffer);
  }

  // Phase 5: a resumed run continues from the epoch its state record names,
  // from that epoch's own files.
  void restore(const nlohmann::json& st) {
    start_epoch_ = st.at("epochs_done").get<int>();
    if (plan_.writer) folder_.after_commit(start_epoch_);
    const std::string model_file = folder_.state_file(start_epoch_, "model.safetensors");
    models::load_into(*m_.net, models::load_safetensors(model_file).tensors, model_file);
    torch::serialize::InputArchive ar;
    ar.load_from(folder_.state_file(start_epoch_, "optimizer.pt"));
    optimizer_->load(ar);
    if (boxes_.head) {
      const auto t = models::load_safetensors(folder_.state_file(start_epoch_, "box_head.safetensors")).tensors;
      torch::NoGradGuard g;
      boxes_.head->weight.copy_(t.at("weight"));
      boxes_.head->bias.copy_(t.at("bias"));
    }
    for (const auto& r : st.at("history")) result_.history.push_back(record_from_json(r));
    result_.best_epoch = st.at("best_epoch").get<int>();
    result_.best_val_auc = st.at("best_val_auc").get<double>();
    since_best_ = st.value("since_best", 0);
    if (ema_) {
      // The state's model holds the averaged weights; the raw ones were saved beside them.
      const std::string raw_file = folder_.state_file(start_epoch_, "raw.safetensors");
      auto raw = models::load_safetensors(raw_file).tensors;
      for (auto& [k, v] : ema_->state()) v.copy_(models::module_state(*m_.net).at(k));
      models::load_into(*m_.net, raw, raw_file);
    }
    if (result_.best_epoch > 0) {  // the best model so far keeps its threshold
      info_ = ModelInfo::from_json(st.at("best_info"), folder_.state_record());
      result_.threshold = info_.threshold;
    }
    spdlog::info("resuming {} after epoch {} (best val AUC {:.4f} at epoch {})", o_.out_dir, start_epoch_,
                 result_.best_val_auc, result_.best_epoch);
  }

  // Phase 6: train, validate and select, commit; until the last epoch, a
  // stop, --stop-after or early stopping.
  void run() {
    for (int epoch = start_epoch_; epoch < o_.epochs; ++epoch) {
      auto rec = train_epoch(epoch);
      if (!rec) break;  // interrupted
      if (ema_) ema_->swap();  // evaluate and save the averaged weights
      validate_and_select(*rec);
      commit(rec->epoch);
      if (o_.stop_after_epochs > 0 && rec->epoch - start_epoch_ >= o_.stop_after_epochs && rec->epoch < o_.epochs) {
        spdlog::info("stopping after {} epochs as asked; continue with --resume", o_.stop_after_epochs);
        break;
      }
      if (o_.patience > 0 && since_best_ >= o_.patience) {
        spdlog::info("early stopping: validation ROC-AUC has not improved for {} epochs", o_.patience);
        result_.early_stopped = true;
        break;
      }
    }
  }

  // Phase 7: checkpoint averaging, the threshold's copy for people, the result.
  TrainResult finish() {
    result_.model_val_auc = result_.best_val_auc;
    const bool averaging = o_.average_last > 0;
    const bool finished = !result_.history.empty() && result_.history.back().epoch == o_.epochs;
    if (averaging && finished) {
      average_last_epochs();
    } else if (averaging && !result_.interrupted && result_.early_stopped && plan_.writer) {
      spdlog::warn("--average {}: training stopped early, so the best epoch is copied to {} instead of an average",
                   o_.average_last, folder_.model());
      util::write_file_atomic(folder_.model(), util::read_file(folder_.best_epoch_model()));
    }
    // Until an averaged run has finished, its best model so far is the best epoch.
    if (averaging && !finished && !result_.early_stopped) result_.model = folder_.best_epoch_model();
    if (result_.best_epoch > 0 && plan_.writer) {
      // The operating threshold travels with the model; a copy for people.
      util::write_file_atomic(folder_.file("threshold.json"),
                              nlohmann::json{{"model", fs::path(result_.model).filename().string()},
                                             {"threshold", result_.threshold},
                                             {"rule", info_.threshold_rule},
                                             {"val_roc_auc", result_.model_val_auc},
                                             {"best_epoch", result_.best_epoch},
                                             {"best_epoch_val_roc_auc", result_.best_val_auc}}
                                  .dump(2));
    }
    return std::move(result_);
  }

 private:
  bool local_stop() const { return stop_ && *stop_; }
  // With ranks, every rank stops at the same step (train_step_sharded).
  bool stopped() const { return plan_.comm ? consensus_stop_ : local_stop(); }

  torch::Tensor forward_trainable(const torch::Tensor& x) {
    if (m_.use_cache && d_.features.train.pooled) return m_.net->forward_head(x.view({x.size(0), x.size(1), 1, 1}));
    if (m_.use_cache) return m_.net->forward_head(m_.net->forward_stages(x, m_.first, m_.stages));
    return m_.net->forward(x);
  }

  // Training forward: logits, and with box supervision each cell's fracture
  // log-odds ([N, 1, h, w]): the pooled classifier's own with cell pooling,
  // else the separate box head's.
  torch::Tensor forward_train(const torch::Tensor& x, torch::Tensor& cells) {
    if (m_.box_weight <= 0) return forward_trainable(x);
    const auto f = m_.net->forward_stages(x, m_.first, m_.stages);
    if (boxes_.head) {
      cells = boxes_.head->forward(f);
      return m_.net->forward_head(f);
    }
    const auto d = m_.net->cell_log_odds(f);
    cells = d.unsqueeze(1);
    return m_.net->pool_log_odds(d);
  }

  torch::Tensor loss_fn(const torch::Tensor& logits, const torch::Tensor& y) {
    auto opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(o_.label_smoothing);
    if (d_.class_weight.defined()) opts.weight(d_.class_weight);
    return torch::nn::functional::cross_entropy(logits, y, opts);
  }

  struct EpochProgress {
    util::Progress bar;
    int64_t step = 0, seen = 0, steps = 0;
    double loss_sum = 0, lr = 0;
    double sync_seconds = 0;  // with ranks: waiting in collectives (gradients, totals, BatchNorm statistics)
    double mean_loss() const { return loss_sum / std::max<double>(1, static_cast<double>(seen)); }
  };

  // One optimiser step. rows: the batch's rows of the cached training set
  // (for box targets).
  void train_step(EpochProgress& p, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& rows) {
    if (plan_.comm) return train_step_sharded(p, x, y, rows);
    p.lr = lr_at(p.step++, d_.total_steps, d_.warmup_steps, o_.lr, o_.schedule);
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(p.lr);
    optimizer_->zero_grad();
    torch::Tensor loss, cells;  // cells: per-cell log-odds, with box supervision
    torch::Tensor mask, known;  // and their box targets
    if (m_.box_weight > 0) {
      mask = boxes_.targets.mask.index_select(0, rows);
      known = boxes_.targets.known.index_select(0, rows);
    }
    if (o_.mixup > 0 && x.size(0) > 1) {
      // mixup (Zhang et al. 2018): train on convex blends of pairs of inputs
      // (cached feature maps, or images) against the same blend of losses.
      std::gamma_distribution<double> gamma(o_.mixup, 1.0);
      const double g1 = gamma(order_rng_), g2 = gamma(order_rng_), lam = g1 / (g1 + g2);
      auto perm = torch::randperm(x.size(0), torch::kLong);
      auto mixed = (lam * x + (1 - lam) * x.index_select(0, perm)).contiguous(x.suggest_memory_format());
      auto logits = forward_train(mixed.to(plan_.device), cells);
      loss = lam * loss_fn(logits, y.to(plan_.device)) +
             (1 - lam) * loss_fn(logits, y.index_select(0, perm).to(plan_.device));
      if (cells.defined()) {  // the boxes blend like the images; a cell's target is known if both are
        mask = lam * mask + (1 - lam) * mask.index_select(0, perm);
        known = known * known.index_select(0, perm);
      }
    } else {
      loss = loss_fn(forward_train(x.to(plan_.device), cells), y.to(plan_.device));
    }
    if (cells.defined())
      loss = loss + m_.box_weight * box_loss(cells, mask.to(plan_.device), known.to(plan_.device));
    loss.backward();
    if (o_.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m_.params, o_.clip_grad_norm);
    optimizer_->step();
    if (ema_) ema_->update();
    p.loss_sum += loss.item<double>() * static_cast<double>(x.size(0));
    p.seen += x.size(0);
    p.bar.advance(x.size(0), fmt::format("loss {:.4f}", p.loss_sum / static_cast<double>(p.seen)));
  }


  // The data-parallel step. The batch's loss is normalised by the whole
  // batch's weight (every rank's part), and the ranks sum their gradients:
  // every replica takes the step one process would take on the whole batch.
  // Not shared: BatchNorm's batch statistics (each rank its own part) and
  // mixup's pairs (within a rank's part).
  void train_step_sharded(EpochProgress& p, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& rows) {
    p.lr = lr_at(p.step++, d_.total_steps, d_.warmup_steps, o_.lr, o_.schedule);
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(p.lr);
    optimizer_->zero_grad();
    const auto dev = plan_.device;
    const int64_t n = x.defined() ? x.size(0) : 0;
    const auto yd = n > 0 ? y.to(dev) : torch::Tensor();
    const double weight = n == 0                        ? 0.0
                          : d_.class_weight.defined() ? d_.class_weight.index_select(0, yd).sum().item<double>()
                                                      : static_cast<double>(n);
    // The whole batch: its size, its weight, and whether a rank was asked to stop.
    const auto totals = torch::tensor({static_cast<float>(n), static_cast<float>(weight), local_stop() ? 1.f : 0.f});
    auto timed = [&p](auto&& collective) {
      const auto t0 = std::chrono::steady_clock::now();
      collective();
      p.sync_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    ++p.steps;
    timed([&] { plan_.comm->all_reduce_sum({totals}); });
    const auto whole_n = static_cast<int64_t>(totals[0].item<float>());
    const double whole_weight = totals[1].item<float>();
    if (totals[2].item<float>() > 0) {
      consensus_stop_ = true;
      return;
    }
    torch::Tensor loss, cells, mask, known;
    if (m_.box_weight > 0 && n > 0) {
      mask = boxes_.targets.mask.index_select(0, rows);
      known = boxes_.targets.known.index_select(0, rows);
    }
    auto ce_sum = [&](const torch::Tensor& logits, const torch::Tensor& target) {
      auto opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(o_.label_smoothing).reduction(torch::kSum);
      if (d_.class_weight.defined()) opts.weight(d_.class_weight);
      return torch::nn::functional::cross_entropy(logits, target, opts);
    };
    const bool mix = o_.mixup > 0 && whole_n > 1;
    double lam = 1;
    if (mix) {  // every rank draws the same blend weight, as one process would
      std::gamma_distribution<double> gamma(o_.mixup, 1.0);
      const double g1 = gamma(order_rng_), g2 = gamma(order_rng_);
      lam = g1 / (g1 + g2);
    }
    if (n > 0) {
      if (mix) {
        auto perm = torch::randperm(n, torch::kLong);
        auto mixed = (lam * x + (1 - lam) * x.index_select(0, perm)).contiguous(x.suggest_memory_format());
        auto logits = forward_train(mixed.to(dev), cells);
        loss = lam * ce_sum(logits, yd) + (1 - lam) * ce_sum(logits, yd.index_select(0, perm.to(dev)));
        if (cells.defined()) {
          mask = lam * mask + (1 - lam) * mask.index_select(0, perm);
          known = known * known.index_select(0, perm);
        }
      } else {
        loss = ce_sum(forward_train(x.to(dev), cells), yd);
      }
      loss = loss / whole_weight;
    }
    if (m_.box_weight > 0) {  // box_loss's two halves, over the whole batch's cells
      torch::Tensor pos, neg;
      auto counts = torch::zeros({2});
      if (cells.defined()) {
        const auto k = known.to(dev).view({-1, 1, 1, 1}).expand_as(mask);
        pos = mask.to(dev) * k;
        neg = (1 - mask.to(dev)) * k;
        counts = torch::stack({pos.sum(), neg.sum()}).to(torch::kCPU).to(torch::kFloat);
      }
      timed([&] { plan_.comm->all_reduce_sum({counts}); });
      if (cells.defined()) {
        const auto bce = torch::nn::functional::binary_cross_entropy_with_logits(
            cells, mask.to(dev), torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
        loss = loss + m_.box_weight * (0.5 * (bce * pos).sum() / std::max(1.f, counts[0].item<float>()) +
                                       0.5 * (bce * neg).sum() / std::max(1.f, counts[1].item<float>()));
      }
    }
    if (n > 0) loss.backward();
    // The sum of every rank's gradients, in buckets; with the loss, and which
    // gradients any rank has (an optimiser leaves a parameter without one alone).
    std::vector<torch::Tensor> bucket;
    std::vector<float> has_grad;
    for (auto& prm : m_.params) {
      has_grad.push_back(prm.grad().defined() ? 1.f : 0.f);
      if (!prm.grad().defined()) prm.mutable_grad() = torch::zeros_like(prm);
      bucket.push_back(prm.grad());
    }
    const auto any_grad = torch::tensor(has_grad);
    const auto loss_value = torch::tensor({n > 0 ? loss.item<float>() : 0.f});
    bucket.push_back(any_grad);
    bucket.push_back(loss_value);
    timed([&] { plan_.comm->all_reduce_sum(bucket); });
    for (size_t i = 0; i < m_.params.size(); ++i)
      if (any_grad[static_cast<int64_t>(i)].item<float>() == 0) m_.params[i].mutable_grad() = torch::Tensor();
    if (o_.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(m_.params, o_.clip_grad_norm);
    optimizer_->step();
    // BatchNorm's running statistics saw only this rank's part: rank 0's go
    // to every replica (as PyTorch's DDP broadcasts buffers), so that they
    // stay the same model.
    if (!trainable_buffers_.empty()) timed([&] { plan_.comm->broadcast(trainable_buffers_); });
    if (ema_) ema_->update();
    p.loss_sum += loss_value.item<float>() * static_cast<double>(whole_n);
    p.seen += whole_n;
    p.bar.advance(whole_n, fmt::format("loss {:.4f}", p.loss_sum / static_cast<double>(std::max<int64_t>(1, p.seen))));
  }

  // The cached rows in this epoch's order: shuffled, or drawn by weight with
  // replacement; each with one of its cached views.
  void train_cached_epoch(EpochProgress& p) {
    const int64_t n = d_.n_train;
    std::vector<int64_t> order(static_cast<size_t>(n));
    if (!d_.sample_weights.empty()) {
      std::discrete_distribution<int64_t> pick(d_.sample_weights.begin(), d_.sample_weights.end());
      for (auto& i : order) i = pick(order_rng_);
    } else {
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), order_rng_);
    }
    std::vector<int64_t> views(order.size(), 0);
    std::uniform_int_distribution<int64_t> pick_view(0, d_.n_views - 1);
    if (d_.n_views > 1)
      for (auto& v : views) v = pick_view(order_rng_);
    const auto& cached = d_.features.train;
    const int64_t rows = cached.y.size(0);
    for (int64_t b = 0; b < n && !stopped(); b += o_.batch_size) {
      const int64_t e = std::min(n, b + o_.batch_size);
      // This process's rows of the batch (all of them alone), and their views.
      std::vector<int64_t> batch_rows, view_rows;
      for (int64_t k = b; k < e; ++k)
        if (const int64_t r = d_.local_row[static_cast<size_t>(order[static_cast<size_t>(k)])]; r >= 0) {
          batch_rows.push_back(r);
          view_rows.push_back(views[static_cast<size_t>(k)] * rows + r);
        }
      auto x = cached.x.index_select(0, torch::tensor(view_rows, torch::kLong));
      if (m_.augment_features && x.size(0) > 0) x = augment_feature_maps(x);
      const auto idx = torch::tensor(batch_rows, torch::kLong);
      train_step(p, x, cached.y.index_select(0, idx), idx);
    }
  }

  void train_streamed_epoch(EpochProgress& p, int epoch) {
    d_.train_loader->start_epoch(epoch);
    while (!stopped()) {
      auto batch = d_.train_loader->next();
      if (!batch) break;
      if (batch->empty() && !plan_.comm) continue;  // a rank steps with the others even with nothing to add
      train_step(p, batch->images, batch->labels, {});
    }
  }

  // The epoch's record so far (training figures), or none when interrupted.
  std::optional<EpochRecord> train_epoch(int epoch) {
    // Every epoch's randomness (order, dropout, augmentation) derives from
    // (seed, epoch) alone, so a resumed run continues exactly as an unbroken one.
    order_rng_.seed(util::mix_seed(o_.seed, static_cast<uint64_t>(epoch), 0xfeed));
    // With ranks, each its own stream (dropout, mixup's pairs): one stream
    // on every rank would give every rank's part the same masks.
    const uint64_t rank = plan_.comm ? static_cast<uint64_t>(plan_.comm->rank()) : 0;
    torch::manual_seed(util::mix_seed(o_.seed, static_cast<uint64_t>(epoch), 0xd209) + rank);
    m_.net->train();
    set_frozen(*m_.net, m_.first);
    EpochProgress p{util::Progress(fmt::format("epoch {}/{}", epoch + 1, o_.epochs), d_.n_train)};
    p.step = static_cast<int64_t>(epoch) * d_.steps_per_epoch;
    p.lr = o_.lr;
    if (m_.use_cache) train_cached_epoch(p);
    else train_streamed_epoch(p, epoch);
    if (stopped()) {
      p.bar.finish("interrupted");
      result_.interrupted = true;
      spdlog::warn("interrupted during epoch {}; {} holds epoch {} - continue with --resume", epoch + 1,
                   folder_.last_model(), epoch);
      return std::nullopt;
    }
    p.bar.finish(fmt::format("loss {:.4f}", p.mean_loss()));
    if (plan_.comm && p.steps > 0)  // the time a rank waits includes the others' slower work
      spdlog::info("rank {} of {}: {:.1f} ms per step in collectives, {:.0f}% of the epoch's {:.1f} s",
                   plan_.comm->rank(), plan_.comm->size(), 1e3 * p.sync_seconds / static_cast<double>(p.steps),
                   100 * p.sync_seconds / std::max(1e-9, p.bar.elapsed_seconds()), p.bar.elapsed_seconds());
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.train_loss = p.mean_loss();
    rec.lr = p.lr;
    rec.seconds = p.bar.elapsed_seconds();
    rec.images_per_second = p.bar.rate();
    return rec;
  }

  ValidationOutput validate() {
    torch::NoGradGuard g;
    m_.net->eval();
    ValidationOutput out;
    const auto& val_set = d_.val_part;  // this process's part
    if (m_.use_cache) {
      const auto& cached = d_.features.val;
      std::vector<torch::Tensor> ps;
      for (int64_t b = 0; b < cached.x.size(0); b += 64)
        ps.push_back(torch::softmax(forward_trainable(cached.x.slice(0, b, b + 64).to(plan_.device)), 1).to(torch::kCPU));
      out.probs = torch::cat(ps);
      out.labels = cached.y;
      for (size_t r : cached.index) out.sources.push_back(val_set[r].source);
    } else {
      auto probs = predict_probabilities(*m_.net, *d_.val_loader, plan_.device);
      std::vector<int64_t> ys;
      for (const auto& s : val_set) ys.push_back(s.label);
      auto ok = ~torch::isnan(probs.select(1, 0));  // unreadable images have NaN rows
      out.probs = probs.index({ok});
      out.labels = torch::tensor(ys).index({ok});
      auto oa = ok.accessor<bool, 1>();
      for (size_t i = 0; i < val_set.size(); ++i)
        if (oa[static_cast<int64_t>(i)]) out.sources.push_back(val_set[i].source);
    }
    if (plan_.comm) gather_validation(out);
    out.loss = torch::nll_loss(torch::log(out.probs.clamp_min(1e-7)), out.labels).item<double>();
    return out;
  }

  // Every rank's validation rows, on every rank (so that all select alike):
  // probabilities, label and source travel as the columns of one table.
  void gather_validation(ValidationOutput& out) const {
    std::vector<std::string> names;
    for (const auto& s : plan_.val_set) names.push_back(s.source);
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    std::vector<float> codes;
    for (const auto& s : out.sources)
      codes.push_back(static_cast<float>(std::lower_bound(names.begin(), names.end(), s) - names.begin()));
    const int64_t c = plan_.classes;
    const auto local = torch::cat({out.probs.view({-1, c}).to(torch::kFloat), out.labels.to(torch::kFloat).view({-1, 1}),
                                   torch::tensor(codes).view({-1, 1})},
                                  1);
    const auto all = plan_.comm->all_gather_rows(local);
    out.probs = all.slice(1, 0, c).contiguous();
    out.labels = all.select(1, c).round().to(torch::kLong).contiguous();
    out.sources.clear();
    const auto code = all.select(1, c + 1).round().to(torch::kLong);
    for (int64_t i = 0; i < code.size(0); ++i) out.sources.push_back(names.at(static_cast<size_t>(code[i].item<int64_t>())));
  }

  // The operating threshold, chosen on these validation probabilities.
  void set_threshold(ModelInfo& mi, const ValidationOutput& val, const std::string& what) const {
    mi.threshold_rule = "default 0.5";
    mi.threshold = 0.5;
    if (plan_.classes != 2) return;
    mi.threshold = threshold_on_validation(o_.threshold_rule, val.probs, val.labels);
    mi.threshold_rule = o_.threshold_rule + " on validation, " + what;
  }

  // Where the model came from (recipe, data, machine), recorded beside its validation summary.
  nlohmann::json provenance() const {
    const auto& mc = plan_.machine;
    nlohmann::json machine = {{"cpu", mc.cpu}, {"isa", mc.isa}, {"threads", mc.threads}};
    if (!mc.onednn_isa_cap.empty()) machine["onednn_isa_cap"] = mc.onednn_isa_cap;
    return {{"train_images", d_.n_train}, {"freeze", o_.freeze.str()}, {"seed", o_.seed},
            {"recipe", recipe_as_run_}, {"manifest_sha256", o_.manifest_sha256}, {"machine", machine}};
  }

  // Validation scores the epoch (the selection score: validation.h); a
  // better one becomes the best model, with its threshold.
  void validate_and_select(EpochRecord& rec) {
    const auto val = validate();
    const ValidationScore v = score_validation(val.probs, val.labels, val.sources);
    rec.val_loss = val.loss;
    rec.val_auc = v.auc;
    rec.val_ap = v.ap;
    rec.val_auc_pooled = v.pooled_auc;
    rec.val_auc_by_source = v.auc_by_source;
    result_.history.push_back(rec);
    spdlog::info("epoch {}/{}: train loss {:.4f}, val loss {:.4f}, val ROC-AUC {:.4f}{}, AP {:.4f}, lr {:.2e}, {:.0f} img/s",
                 rec.epoch, o_.epochs, rec.train_loss, rec.val_loss, rec.val_auc, by_source_text(v), rec.val_ap, rec.lr,
                 rec.images_per_second);
    const bool improved = result_.best_epoch < 0 || rec.val_auc > result_.best_val_auc;
    if (!improved) {
      ++since_best_;
      return;
    }
    result_.best_epoch = rec.epoch;
    result_.best_val_auc = rec.val_auc;
    since_best_ = 0;
    set_threshold(info_, val, "epoch " + std::to_string(rec.epoch));
    info_.extra = validation_summary(v);
    info_.extra["epoch"] = rec.epoch;
    info_.extra.update(provenance());
    if (plan_.writer) {
      save_model(folder_.best_epoch_model(), *m_.net, info_);
      util::crash_point("epoch end: best model written");
    }
    result_.threshold = info_.threshold;
  }

  // Commits the epoch (run_folder.h). Files written before the record (best
  // model, snapshots, metrics) are written again, the same, when the epoch is
  // trained again after a resume.
  void commit(int epoch) {
    if (!plan_.writer) {  // rank 0 writes; the others only go back to the raw weights
      if (ema_) ema_->swap();
      return;
    }
    ModelInfo last_info = info_;
    last_info.extra["epoch"] = epoch;
    save_model(folder_.state_file(epoch, "model.safetensors"), *m_.net, last_info);
    util::crash_point("epoch end: state model written");
    if (o_.average_last > 0 && epoch >= first_averaged_) save_model(folder_.snapshot(epoch), *m_.net, last_info);
    if (ema_) {
      ema_->swap();  // back to raw weights for training
      models::TensorMap raw;
      for (auto& [k, v] : models::module_state(*m_.net)) raw[k] = v.detach().to(torch::kCPU);
      models::save_safetensors(folder_.state_file(epoch, "raw.safetensors"), raw);
    }
    if (boxes_.head)
      models::save_safetensors(folder_.state_file(epoch, "box_head.safetensors"),
                               {{"weight", boxes_.head->weight.detach().to(torch::kCPU)},
                                {"bias", boxes_.head->bias.detach().to(torch::kCPU)}});
    {
      torch::serialize::OutputArchive ar;
      optimizer_->save(ar);
      const std::string path = folder_.state_file(epoch, "optimizer.pt"), tmp = path + ".tmp." + std::to_string(::getpid());
      ar.save_to(tmp);
      util::crash_point("epoch end: optimizer state written, before its rename");
      fs::rename(tmp, path);
    }
    nlohmann::json hist = nlohmann::json::array();
    std::string jsonl;
    for (const auto& r : result_.history) {
      hist.push_back(record_json(r));
      jsonl += record_json(r).dump() + "\n";
    }
    util::write_file_atomic(folder_.file("metrics.jsonl"), jsonl);
    util::crash_point("epoch end: metrics written");
    nlohmann::json state{{"epochs_done", epoch},           {"best_epoch", result_.best_epoch},
                         {"best_val_auc", result_.best_val_auc}, {"since_best", since_best_},
                         {"ema", static_cast<bool>(ema_)}, {"history", hist},
                         {"recipe", recipe_json(o_)}};
    if (result_.best_epoch > 0) state["best_info"] = info_.to_json();
    util::write_file_atomic(folder_.state_record(), state.dump(2));  // the commit
    util::crash_point("epoch end: committed");
    folder_.after_commit(epoch);
  }

  // Checkpoint averaging: one flatter point at the end of the trajectory,
  // scored once on validation, instead of its luckiest epoch.
  void average_last_epochs() {
    std::vector<std::string> snapshots;
    for (int e = first_averaged_; e <= o_.epochs; ++e) snapshots.push_back(folder_.snapshot(e));
    result_.averaged = fmt::format("average of epochs {}-{}", first_averaged_, o_.epochs);
    if (plan_.writer) models::load_into(*m_.net, average_weights(snapshots), result_.averaged);
    if (plan_.comm) broadcast_weights(*plan_.comm, *m_.net);  // rank 0 read the snapshots; every rank validates the average
    const auto val = validate();
    const ValidationScore v = score_validation(val.probs, val.labels, val.sources);
    result_.model_val_auc = v.auc;
    set_threshold(info_, val, result_.averaged);
    info_.extra = validation_summary(v);
    info_.extra["averaged_epochs"] = {first_averaged_, o_.epochs};
    info_.extra["best_epoch"] = result_.best_epoch;
    info_.extra["best_epoch_val_roc_auc"] = result_.best_val_auc;
    info_.extra.update(provenance());
    if (plan_.writer) save_model(folder_.model(), *m_.net, info_);
    result_.threshold = info_.threshold;
    spdlog::info("{}: val loss {:.4f}, val ROC-AUC {:.4f}{}, AP {:.4f}", result_.averaged, val.loss,
                 result_.model_val_auc, by_source_text(v), v.ap);
  }

  const TrainOptions& o_;
  const RunFolder& folder_;
  RunPlan& plan_;
  TrainableModel& m_;
  TrainingData& d_;
  BoxSupervision& boxes_;
  const std::atomic<bool>* stop_;
  nlohmann::json recipe_as_run_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<WeightEma> ema_;
  TrainResult result_;
  ModelInfo info_;
  int start_epoch_ = 0, since_best_ = 0, first_averaged_ = 1;
  bool consensus_stop_ = false;  // a rank was asked to stop
  std::vector<torch::Tensor> trainable_buffers_;  // with ranks: the trainable stages' BatchNorm statistics
  std::mt19937_64 order_rng_{util::mix_seed(0, 0xfeed)};  // reseeded each epoch
};

}  // namespace

TrainResult train(const data::Dataset& dataset, const TrainOptions& o, const std::atomic<bool>* stop,
                  Communicator* comm) {
  const auto t_start = std::chrono::steady_clock::now();
  const RunFolder folder(o.out_dir, o.average_last > 0);
  RunPlan plan = plan_run(dataset, o, folder, comm && comm->size() > 1 ? comm : nullptr);
  TrainableModel model = build_model(plan, o);
  TrainingData data = prepare_data(plan, model, o, stop);
  BoxSupervision boxes = prepare_box_supervision(plan, model, data);
  EpochLoop loop(dataset, o, folder, plan, model, data, boxes, stop);
  if (plan.saved_state) loop.restore(*plan.saved_state);
  loop.run();
  TrainResult result = loop.finish();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return result;
}

}  // namespace fracture::train
