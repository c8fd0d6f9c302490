#include <spdlog/sinks/basic_file_sink.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>

#include "fracture/cli/commands.h"
#include "fracture/cli/config_file.h"
#include "fracture/cli/exit_codes.h"
#include "fracture/data/dataset.h"
#include "fracture/data/split.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/distributed.h"
#include "fracture/train/launch.h"
#include "fracture/train/trainer.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/progress.h"

namespace fracture::cli {
namespace {

std::atomic<bool> g_stop{false};
// Ctrl-C or SIGTERM: training stops after the current batch (or caching after
// its current batch) and the last committed epoch stays resumable; a second
// signal quits at once, which loses nothing committed either.
extern "C" void on_stop_signal(int) {
  if (g_stop) std::_Exit(kExitInterrupted);
  g_stop = true;
}

}  // namespace

data::Dataset dataset_with_splits(const std::vector<std::string>& paths, const std::string& out_dir, uint64_t seed) {
  data::Dataset d = data::load_datasets(paths);
  const std::string path = fmt::format("{}", fmt::join(paths, " + "));
  for (const auto& w : d.warnings) spdlog::warn("{}", w);
  bool has_splits = true;
  for (const auto& s : d.samples) has_splits = has_splits && !s.split.empty();
  if (!has_splits) {
    spdlog::info("{} has no split yet: making one (as `fracture split --seed {}`)", path, seed);
    data::SplitOptions so;
    so.seed = seed;
    const auto rep = data::assign_splits(d, so);
    for (const auto& m : rep.messages) spdlog::warn("{}", m);
    spdlog::info("split:\n{}", data::format_split_counts(d));
  }
  if (!out_dir.empty()) data::write_manifest(out_dir + "/split.csv", d);
  return d;
}

void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Fine-tune a model from ImageNet weights on radiographs");
  auto o = std::make_shared<train::TrainOptions>();
  auto data_paths = std::make_shared<std::vector<std::string>>();
  // Typed options arrive as text and are parsed in the callback (train/options.h).
  struct Choices {
    std::string resize = "stretch", freeze, optimizer, schedule, balance, cache, augment_kind;
  };
  auto choice = std::make_shared<Choices>();
  choice->freeze = o->freeze.str();
  choice->optimizer = train::to_string(o->optimizer);
  choice->schedule = train::to_string(o->schedule);
  choice->balance = train::to_string(o->balance);
  choice->cache = train::to_string(o->cache);
  choice->augment_kind = train::to_string(o->augment_kind);
  auto no_augment = std::make_shared<bool>(false);
  auto nproc = std::make_shared<int>(1);
  auto dist_timeout = std::make_shared<int>(300);
  cmd->add_option("--config", "TOML file of options, keys named as these flags (a run's config.toml); flags given too win");
  cmd->add_option("--data", *data_paths,
                  "Split manifest (from `fracture split`), or a dataset folder to split now; "
                  "give it again to train on several data sets (each one a source, validated apart)")
      ->required();
  cmd->add_option("-o,--out", o->out_dir, "Run folder: model, metrics, log, config")->capture_default_str();
  cmd->add_option("-m,--model", o->model, "Architecture (see `fracture models`)")->capture_default_str();
  cmd->add_option("--weights", o->weights, "Backbone weights file (torchvision/timm/lukemelas names) instead of the built-in ImageNet weights");
  cmd->add_flag("--from-scratch", o->from_scratch, "Random initialisation (no pretrained weights)");
  cmd->add_option("--freeze", choice->freeze, "What stays frozen: head (train the classifier only), last:K (train the last K stages too), full (train everything)")
      ->capture_default_str();
  cmd->add_option("--size", o->image_size, "Input size in pixels (0: the model's native size, e.g. 224 for Lite0)")->capture_default_str();
  cmd->add_option("--resize", choice->resize, "stretch (as the paper) or letterbox")->capture_default_str()->check(CLI::IsMember({"stretch", "letterbox"}));
  cmd->add_flag("--clahe", o->clahe, "Contrast-limited adaptive histogram equalisation before the network");
  cmd->add_flag("--standardise", o->standardise,
                "Per-image standardisation: each image's grey levels shifted and scaled to one mean and spread "
                "before the network (exposure and contrast differ between scanners)");
  cmd->add_option("--epochs", o->epochs, "Epochs")->capture_default_str();
  cmd->add_option("-b,--batch-size", o->batch_size, "Batch size")->capture_default_str();
  cmd->add_option("--optimizer", choice->optimizer, "adamw, adam or sgd")->capture_default_str()->check(CLI::IsMember({"adamw", "adam", "sgd"}));
  cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "Weight decay")->capture_default_str();
  cmd->add_option("--momentum", o->momentum, "SGD momentum (Nesterov)")->capture_default_str();
  cmd->add_option("--warmup", o->warmup_epochs, "Linear warm-up, in epochs")->capture_default_str();
  cmd->add_option("--schedule", choice->schedule, "After warm-up: cosine or constant")->capture_default_str()->check(CLI::IsMember({"cosine", "constant"}));
  cmd->add_option("--label-smoothing", o->label_smoothing, "Label smoothing")->capture_default_str();
  cmd->add_option("--mixup", o->mixup, "mixup: train on blends of pairs of inputs (cached feature maps or images) and their losses, weight ~ Beta(A, A) (0: off)")->capture_default_str();
  cmd->add_option("--balance", choice->balance, "Class imbalance: loss (class-weighted), sampler (balanced batches) or none")
      ->capture_default_str()->check(CLI::IsMember({"loss", "sampler", "none"}));
  cmd->add_option("--source-weights", o->source_weights,
                  "With several sources: sampling weight of each, SOURCE=W,... (e.g. fracatlas=1,bone-fracture-yolo=0.5), "
                  "or of one class of a source, SOURCE/CLASS=W (e.g. bone-fracture-yolo/non_fractured=0.5); "
                  "epochs then draw images with replacement");
  cmd->add_option("--ema", o->ema_decay, "Weight EMA decay, e.g. 0.999 (0: off)")->capture_default_str();
  cmd->add_option("--average", o->average_last,
                  "Checkpoint averaging: the model is the mean of the weights after each of the last K epochs "
                  "(0: the epoch with the best validation ROC-AUC)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--box-loss", o->box_loss,
                  "Box supervision: weight of a per-cell loss that teaches where the training images' fracture "
                  "boxes are (FracAtlas Annotations/YOLO; without boxes training goes on without it; 0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--cell-pooling", o->cell_pooling,
                  "Multiple-instance pooling: the image's fracture log-odds is a soft maximum (log-sum-exp, "
                  "sharpness R) over the feature map's cells instead of their mean; with --box-loss the boxes "
                  "supervise those cells (0: average pooling)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--clip-grad", o->clip_grad_norm, "Gradient norm clipping (0: off)")->capture_default_str();
  cmd->add_option("--patience", o->patience, "Early stopping: epochs without validation ROC-AUC gain (0: off)")->capture_default_str();
  cmd->add_flag("--no-augment", *no_augment, "No train-time augmentation");
  cmd->add_option("--augment-kind", choice->augment_kind,
                  "What augmentation changes: geometric (crop, turn, mirror), intensity (what differs between "
                  "scanners: gamma, window, noise, blur; boxes stay valid, so cached views keep box supervision) or both")
      ->capture_default_str()
      ->check(CLI::IsMember({"geometric", "intensity", "both"}));
  cmd->add_option("--cache", choice->cache, "Frozen-feature cache: ram, disk (reused by --resume) or off")
      ->capture_default_str()->check(CLI::IsMember({"ram", "disk", "off"}));
  cmd->add_flag("--feature-augment", o->feature_augment, "With cached features: mirror and shift the cached feature maps each epoch (no extra caching cost)");
  cmd->add_option("--augment-views", o->cache_views,
                  "With cached features: cache K views of each training image (1 plain, K-1 augmented); each epoch draws one")
      ->capture_default_str();
  cmd->add_option("--workers", o->workers, "Image loading threads")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Compute threads (0: all cores)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed: the same seed and data give the same model and metrics")->capture_default_str();
  cmd->add_option("--threshold", o->threshold_rule, "Operating threshold chosen on validation: youden, sensitivity:S or fixed:T")
      ->capture_default_str();
  cmd->add_option("--device", o->device, "auto, cpu or cuda[:N]")->capture_default_str();
  cmd->add_flag("--resume", o->resume, "Continue the run in --out from its last completed epoch (same options)");
  cmd->add_flag("--overwrite", o->overwrite, "Replace the run already in --out (without it, such a folder is refused)");
  cmd->add_option("--nproc", *nproc,
                  "Data-parallel training: start N local ranks (each its shard of every batch, gradients summed "
                  "over Gloo); under torchrun leave it out, the ranks come from RANK/WORLD_SIZE")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--dist-timeout", *dist_timeout,
                  "Data-parallel training: seconds a rank waits for the others (rendezvous, each collective) "
                  "before it ends the job with an error")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--stop-after", o->stop_after_epochs, "End this invocation after N epochs (continue later with --resume)")
      ->check(CLI::NonNegativeNumber);
  cmd->footer(
      "Writes to --out: best.safetensors (the model to use, with its threshold chosen on validation: the\n"
      "average of the last K epochs, or with --average 0 the best epoch), best-epoch.safetensors and\n"
      "epoch-NN.safetensors (the best single epoch and the K averaged ones), last.safetensors,\n"
      "metrics.jsonl (one line per epoch), config.toml (every option, reusable with --config),\n"
      "split.csv, threshold.json, train.log, state/ (the last committed epoch, for --resume).\n"
      "A folder that holds a run is refused unless --resume or --overwrite. Ctrl-C or SIGTERM stops after the\n"
      "current batch (a second one at once); --resume continues from the last committed epoch.\n\n"
      "Examples:\n"
      "  fracture train --data runs/split.csv --out runs/lite0-384     # the default recipe: ~20 min on 2 cores\n"
      "  fracture train --data runs/split.csv --freeze head --size 224 --out runs/head   # a 2-minute first look\n"
      "  fracture train --config runs/lite0/config.toml --out runs/again");
  cmd->callback([=] {
    o->resize = train::parse_resize_mode(choice->resize);
    o->freeze = train::Freeze::parse(choice->freeze);
    o->optimizer = train::parse_optimizer(choice->optimizer);
    o->schedule = train::parse_schedule(choice->schedule);
    o->balance = train::parse_balance(choice->balance);
    o->cache = train::parse_feature_cache(choice->cache);
    o->augment_kind = train::parse_augment_kind(choice->augment_kind);
    o->augment = !*no_augment;
    train::validate_options(*o);  // every option checked before any work
    const auto world = train::world_from_environment();
    if (*nproc > 1) {
      if (world.size > 1)
        throw CLI::ValidationError("--nproc", "the ranks are started already (WORLD_SIZE is set, as under torchrun)");
      if (const int code = train::run_local_ranks(*nproc, train::rank_command_line(*nproc, o->threads),
                                                  std::chrono::seconds(*dist_timeout));
          code != 0)
        throw CLI::RuntimeError(code);
      return;
    }
    std::unique_ptr<train::Communicator> comm;
    if (world.size > 1) {
      comm = std::make_unique<train::Communicator>(world, std::chrono::seconds(*dist_timeout));
      if (world.rank > 0) spdlog::set_level(std::max(spdlog::level::warn, spdlog::get_level()));  // rank 0 reports
    }
    const bool writer = world.rank == 0;
    if (writer) train::prepare_run_folder(*o);
    std::filesystem::create_directories(o->out_dir);
    // train.log keeps every info line, flushed per line, whatever -q says.
    struct DropSink {
      bool added = false;
      ~DropSink() {
        if (added) spdlog::default_logger()->sinks().pop_back();
      }
    } drop_sink;
    if (writer) {
      auto file_sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(o->out_dir + "/train.log", !o->resume);
      file_sink->set_pattern("[%Y-%m-%d %H:%M:%S] %l %v");
      file_sink->set_level(std::min(spdlog::level::info, console_log_level()));
      spdlog::default_logger()->sinks().push_back(file_sink);
      drop_sink.added = true;
    }
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    if (writer && (!o->resume || !std::filesystem::exists(o->out_dir + "/config.toml")))
      util::write_file_atomic(o->out_dir + "/config.toml", options_to_toml(*cmd));
    const data::Dataset d = dataset_with_splits(*data_paths, writer ? o->out_dir : "", o->seed);
    if (g_stop) throw CLI::RuntimeError(kExitInterrupted);
    if (writer) o->manifest_sha256 = util::sha256_hex(util::read_file(o->out_dir + "/split.csv"));
    if (comm) o->manifest_sha256 = comm->share_text(o->manifest_sha256);  // rank 0's, for every rank's recipe
    train::TrainResult r;
    try {
      r = train::train(d, *o, &g_stop, comm.get());
    } catch (const train::Interrupted&) {
      spdlog::warn(std::filesystem::exists(o->out_dir + "/train_state.json")
                       ? "interrupted before this invocation's first epoch; the run keeps its last committed epoch: continue with --resume"
                       : "interrupted before the first epoch; nothing to resume yet");
      throw CLI::RuntimeError(kExitInterrupted);
    }
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    const std::string decision = r.classes == 2 ? fmt::format("threshold {:.4f}", r.threshold) : "most probable class";
    const char* auc = r.classes == 2 ? "val ROC-AUC" : "val macro ROC-AUC";
    if (!r.averaged.empty())
      spdlog::info("model: {}, {} {:.4f}, {} -> {} (best single epoch: {}, {:.4f} -> {}) ({} in all)", r.averaged, auc,
                   r.model_val_auc, decision, r.model, r.best_epoch, r.best_val_auc, r.best_epoch_model,
                   util::format_duration(r.seconds));
    else if (r.best_epoch > 0)
      spdlog::info("best: epoch {} {} {:.4f}, {} -> {} ({} in all)", r.best_epoch, auc, r.best_val_auc, decision,
                   r.model, util::format_duration(r.seconds));
    if (r.interrupted) throw CLI::RuntimeError(kExitInterrupted);
  });
}

}  // namespace fracture::cli
