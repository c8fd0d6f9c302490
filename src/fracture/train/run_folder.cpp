#include "fracture/train/run_folder.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <filesystem>

#include "fracture/train/trainer.h"
#include "fracture/util/atomic_file.h"

namespace fs = std::filesystem;

namespace fracture::train {
namespace {

// Files a run writes in its folder; one of the first four means a run is there.
const char* const kRunFiles[] = {"best.safetensors", "last.safetensors", "train_state.json", "metrics.jsonl",
                                 "best-epoch.safetensors", "threshold.json", "train_state.pt", "last_raw.safetensors",
                                 "box_head.safetensors"};

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

RunFolder::RunFolder(std::string dir, bool averaging)
    : dir_(std::move(dir)), best_epoch_(dir_ + (averaging ? "/best-epoch.safetensors" : "/best.safetensors")) {}

std::string RunFolder::state_file(int epoch, const char* what) const {
  return fmt::format("{}/state/epoch-{:02d}.{}", dir_, epoch, what);
}

std::string RunFolder::snapshot(int epoch) const { return fmt::format("{}/epoch-{:02d}.safetensors", dir_, epoch); }

nlohmann::json RunFolder::read_state(const nlohmann::json& recipe_now) const {
  const std::string path = state_record();
  nlohmann::json st;
  try {
    st = nlohmann::json::parse(util::read_file(path));
    for (const char* k : {"epochs_done", "best_epoch", "best_val_auc", "history", "recipe"})
      if (!st.contains(k)) throw std::runtime_error(std::string("no '") + k + "'");
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot resume from this state record (" + e.what() +
                             "; a run from an older fracture, or damaged): start again with --overwrite");
  }
  check_same_recipe(st.value("recipe", nlohmann::json()), recipe_now, path);
  return st;
}

void RunFolder::after_commit(int epoch) const {
  util::write_file_atomic(last_model(), util::read_file(state_file(epoch, "model.safetensors")));
  std::error_code ec;
  const std::string mine = fmt::format("epoch-{:02d}.", epoch);
  for (const auto& e : fs::directory_iterator(fs::path(dir_) / "state", ec))
    if (e.path().filename().string().rfind(mine, 0) != 0) fs::remove(e.path(), ec);
}

nlohmann::json record_json(const EpochRecord& r) {
  nlohmann::json j = {{"epoch", r.epoch},     {"train_loss", r.train_loss}, {"val_loss", r.val_loss},
                      {"val_auc", r.val_auc}, {"val_ap", r.val_ap},         {"lr", r.lr},
                      {"seconds", r.seconds}, {"images_per_second", r.images_per_second}};
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

}  // namespace fracture::train
