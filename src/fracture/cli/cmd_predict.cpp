#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "fracture/cli/commands.h"
#include "fracture/cli/exit_codes.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/data/csv.h"
#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/predictor.h"
#include "fracture/train/distributed.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/paths.h"

namespace fs = std::filesystem;

namespace fracture::cli {
namespace {

bool has_csv_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".csv";
}

// Files as given; folders searched recursively for images (by extension or
// content); .csv files read as lists with a "path" column, relative to the
// list's folder. A list that cannot be read is an error naming it.
std::vector<std::string> collect_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    const fs::path p(in);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto& f : data::image_files_in(in)) out.push_back(f);
    } else if (has_csv_extension(p) && fs::is_regular_file(p, ec)) {
      const auto rows = data::parse_csv(util::read_file(in), in);
      const int col = rows.empty() ? -1 : data::csv_column(rows[0], "path");
      if (col < 0) throw std::runtime_error(in + ": a CSV list needs a 'path' column in its header");
      for (size_t r = 1; r < rows.size(); ++r)
        if (static_cast<size_t>(col) < rows[r].size() && !rows[r][col].empty()) {
          const fs::path f(rows[r][col]);
          out.push_back(f.is_absolute() ? f.string() : (p.parent_path() / f).lexically_normal().string());
        }
    } else {
      out.push_back(in);  // unreadable files get an error record from the loader, not an exception here
    }
  }
  return out;
}

// "I/N" -> {I, N}; under torchrun without --shard, {RANK, WORLD_SIZE}; else {0, 1}.
std::pair<int, int> shard_of(const std::string& spec) {
  if (spec.empty()) {
    const auto world = train::world_from_environment();
    return {world.rank, world.size};
  }
  const auto slash = spec.find('/');
  try {
    size_t used = 0;
    const int i = std::stoi(spec.substr(0, slash), &used);
    if (slash == std::string::npos || used != slash) throw std::invalid_argument("");
    const int n = std::stoi(spec.substr(slash + 1), &used);
    if (used != spec.size() - slash - 1 || n < 1 || i < 0 || i >= n) throw std::invalid_argument("");
    return {i, n};
  } catch (const std::exception&) {
    throw CLI::ValidationError("--shard", "'" + spec + "': must be I/N with 0 <= I < N, e.g. 0/4");
  }
}

// A heat map's file name: the image's stem and a hash of its whole path, so
// that a/IM1.dcm and b/IM1.dcm do not overwrite each other.
std::string cam_file_name(const std::string& image_path) {
  return util::escape_invalid_utf8(fs::path(image_path).stem().string()) + "_" +
         util::to_hex(util::fnv1a64(image_path)).substr(0, 8) + "_cam.png";
}

// Writes one record per input as soon as its batch is scored, flushed, so
// that a consumer reading the pipe sees results at once and a crash loses
// at most the batch in flight. Every class's probability is written: in JSON
// as "probabilities" {class: p}, in CSV as p_<class> columns after the
// original ones (which keep their places).
class PredictionWriter {
 public:
  // `types`: the fracture-type model of --types, or null.
  PredictionWriter(std::ostream& out, bool csv, const Predictor& predictor, const Predictor* types)
      : out_(out), csv_(csv), predictor_(predictor), types_(types) {
    if (!csv_) return;
    out_ << "path,probability,label,threshold,model,model_sha256,cam,error";
    for (const auto& c : predictor.classes()) out_ << "," << data::csv_escape("p_" + c);
    if (types) {
      out_ << ",type";
      for (const auto& c : types->classes()) out_ << "," << data::csv_escape("type_" + c);
    }
    out_ << "\n" << std::flush;
  }
  // `type`: the type model's prediction for the same image (with --types).
  void write(const Prediction& p, const std::string& cam, const Prediction* type = nullptr) {
    if (!csv_) {
      auto j = to_json(p, predictor_);
      if (p.ok() && !cam.empty()) j["cam"] = cam;
      if (p.ok() && type && types_) add_type(j, *type, *types_);
      buffer_ += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      return;
    }
    const std::string safe = util::escape_invalid_utf8(p.path), model = data::csv_escape(predictor_.model_name());
    const size_t type_columns = types_ ? types_->classes().size() + 1 : 0;
    if (!p.ok()) {
      buffer_ += fmt::format("{},,,,{},{},,{}{}\n", data::csv_escape(safe), model, predictor_.sha256(),
                             data::csv_escape(util::escape_invalid_utf8(p.error)),
                             std::string(predictor_.classes().size() + type_columns, ','));
      return;
    }
    buffer_ += fmt::format("{},{:.6f},{},{},{},{},{},", data::csv_escape(safe), p.probability, data::csv_escape(p.label),
                           p.threshold ? fmt::format("{:.6f}", *p.threshold) : "", model, predictor_.sha256(),
                           data::csv_escape(cam));
    for (double v : p.probabilities) buffer_ += fmt::format(",{:.6f}", v);
    if (types_) {
      const bool ok = type && type->ok();
      buffer_ += "," + (ok ? data::csv_escape(type->label) : std::string());
      for (size_t c = 0; c < types_->classes().size(); ++c)
        buffer_ += ok ? fmt::format(",{:.6f}", type->probabilities[c]) : std::string(",");
    }
    buffer_ += "\n";
  }
  void flush() {
    out_ << buffer_ << std::flush;
    buffer_.clear();
    if (!out_) throw std::runtime_error("cannot write the predictions (disk full or closed pipe?)");
  }

 private:
  std::ostream& out_;
  bool csv_;
  const Predictor& predictor_;
  const Predictor* types_;
  std::string buffer_;
};

// Writes the heat map of one scored image; returns its file, or "" (named on
// stderr) where it could not be made: the prediction stands without it.
std::string write_heat_map(Predictor& predictor, const Prediction& p, const std::string& folder, int cam_class) {
  try {
    const std::string file = (fs::path(folder) / cam_file_name(p.path)).string();
    const auto map = predictor.heat_map(p.path, cam_class >= 0 ? cam_class : predictor.heat_map_class(p));
    std::vector<uchar> png;
    cv::imencode(".png", map.overlay, png);
    util::write_file_atomic(file, std::string(png.begin(), png.end()));
    return file;
  } catch (const c10::Error& e) {
    spdlog::error("{}: heat map not written: {}", p.path, e.what_without_backtrace());
  } catch (const std::exception& e) {
    spdlog::error("{}: heat map not written: {}", p.path, e.what());
  }
  note_failed_inputs();
  return "";
}

int cam_class_index(const Predictor& predictor, const std::string& name) {
  const int c = predictor.class_index(name);
  if (c < 0)
    throw CLI::ValidationError("--cam-class", "'" + name + "' is not one of the model's classes (" +
                                                 fmt::format("{}", fmt::join(predictor.classes(), ", ")) + ")");
  return c;
}

}  // namespace

void add_predict_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict", "Fracture probability for images (files, folders, CSV lists); optional heat maps");
  struct Args : InferenceFlags {
    std::string out, format, cam, cam_class, types_model, shard;
    bool types = false;
    std::vector<std::string> inputs;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("inputs", a->inputs, "Image files (JPEG, PNG, BMP, TIFF, DICOM), folders, or CSV lists with a path column")->required();
  add_inference_flags(cmd, *a);
  cmd->add_option("-o,--out", a->out, "Write here instead of standard output (.csv for CSV)");
  cmd->add_option("--format", a->format, "jsonl or csv (default: from --out, else jsonl)")->check(CLI::IsMember({"jsonl", "csv"}));
  cmd->add_option("--cam", a->cam, "Folder for Grad-CAM heat maps (PNG per image)");
  cmd->add_option("--shard", a->shard,
                  "Score only shard I of N (every Nth input from the Ith; 0-based), e.g. 2/8, for archives split "
                  "over processes or machines; {shard} in --out becomes I. Under torchrun the rank's shard is "
                  "the default");
  cmd->add_flag("--types", a->types,
                "Also the fracture type (the built-in bone-types model, or --types-model): the most probable type "
                "and every type's probability; meaningful for fractured images only");
  cmd->add_option("--types-model", a->types_model, "Fracture-type model for --types (a file or a built-in name)");
  cmd->add_option("--cam-class", a->cam_class,
                  "Class the heat maps explain (default: the positive class of a two-class model, else the predicted one)");
  cmd->footer(
      "One record per input, written as each batch is scored: path, probability, label, threshold,\n"
      "probabilities (every class's), model, model_sha256 (and cam: the heat map's file). Two-class\n"
      "models: probability is the positive class's and label its decision at the model's threshold.\n"
      "More classes: label is the most probable class, probability its probability, no threshold.\n"
      "An input that cannot be read gets {\"path\": ..., \"error\": ...} instead, and is named on stderr.\n"
      "Exit status: 0 all scored, 1 some inputs failed (the rest scored), 2 usage or fatal error.\n"
      "Research use only - not a medical device.\n\n"
      "Examples:\n  fracture predict IMG0001.jpg                     # the built-in FracAtlas model\n"
      "  fracture predict -m runs/lite0/best.safetensors scans/ --out predictions.csv\n"
      "  fracture predict -m runs/lite0/best.safetensors IMG0001.jpg --cam heatmaps/\n"
      "  fracture predict archive/ --shard 0/4 --out preds-{shard}.jsonl   # one of 4 processes; then cat preds-*.jsonl");
  cmd->callback([a] {
    Predictor predictor(predictor_options(*a));
    const int cam_class = a->cam_class.empty() ? -1 : cam_class_index(predictor, a->cam_class);
    auto inputs = collect_inputs(a->inputs);
    if (inputs.empty()) throw std::runtime_error("no image files in the inputs given");
    if (const auto [shard, shards] = shard_of(a->shard); shards > 1) {
      std::vector<std::string> mine;
      for (size_t i = static_cast<size_t>(shard); i < inputs.size(); i += static_cast<size_t>(shards)) mine.push_back(inputs[i]);
      spdlog::info("shard {} of {}: {} of {} inputs", shard, shards, mine.size(), inputs.size());
      inputs = std::move(mine);
      const auto at = a->out.find("{shard}");
      if (at != std::string::npos) a->out.replace(at, 7, std::to_string(shard));
      else if (a->shard.empty())  // ranks started together would all write to one place
        throw CLI::ValidationError("--out", "under torchrun each rank needs its own output: put {shard} in --out");
      if (inputs.empty()) spdlog::warn("shard {} of {} holds no input", shard, shards);
    }
    if (!a->cam.empty()) fs::create_directories(a->cam);
    const bool csv = a->format == "csv" || (a->format.empty() && has_csv_extension(a->out));
    std::ofstream file;
    if (!a->out.empty()) {
      file.open(a->out, std::ios::binary | std::ios::trunc);
      if (!file) throw std::runtime_error(a->out + ": cannot open for writing");
    }
    std::unique_ptr<Predictor> types;
    if (a->types || !a->types_model.empty()) {
      PredictorOptions o = predictor_options(*a);
      o.model = a->types_model.empty() ? "bone-types" : a->types_model;
      types = std::make_unique<Predictor>(o);
    }
    PredictionWriter writer(a->out.empty() ? std::cout : file, csv, predictor, types.get());
    size_t scored = 0, failed = 0;
    const auto start = std::chrono::steady_clock::now();
    predictor.predict_files(inputs, [&](const std::vector<Prediction>& batch) {
      std::map<std::string, Prediction> type_of;  // the batch's readable images through the type model
      if (types) {
        std::vector<std::string> readable;
        for (const auto& p : batch)
          if (p.ok()) readable.push_back(p.path);
        types->predict_files(readable, [&](const std::vector<Prediction>& typed) {
          for (const auto& t : typed) type_of[t.path] = t;
        });
      }
      for (const auto& p : batch) {
        if (!p.ok()) {
          writer.write(p, "");  // the loader named it on stderr
          ++failed;
          continue;
        }
        const auto type = type_of.find(p.path);
        writer.write(p, a->cam.empty() ? "" : write_heat_map(predictor, p, a->cam, cam_class),
                     type == type_of.end() ? nullptr : &type->second);
        ++scored;
      }
      writer.flush();
    }, inputs.size() > 64 ? "predicting" : "");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("predicted {} images in {:.3f} s ({:.2f} img/s, batch {})", scored, seconds,
                 static_cast<double>(scored) / seconds, a->batch_size);
    if (!a->out.empty()) spdlog::info("wrote {} predictions to {}", scored, a->out);
    if (!a->cam.empty()) spdlog::info("heat maps in {}", a->cam);
    if (failed > 0) {
      spdlog::warn("{} of {} inputs could not be scored (each named above, with an error record)", failed, inputs.size());
      note_failed_inputs();
    }
  });
}

}  // namespace fracture::cli
