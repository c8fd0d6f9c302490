#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fracture/cli/commands.h"
#include "fracture/cli/exit_codes.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/data/csv.h"
#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/data/loader.h"
#include "fracture/explain/gradcam.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
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
std::vector<data::Sample> collect_inputs(const std::vector<std::string>& inputs) {
  std::vector<data::Sample> out;
  for (const auto& in : inputs) {
    const fs::path p(in);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto& f : data::image_files_in(in)) out.push_back({f});
    } else if (has_csv_extension(p) && fs::is_regular_file(p, ec)) {
      const auto rows = data::parse_csv(util::read_file(in), in);
      const int col = rows.empty() ? -1 : data::csv_column(rows[0], "path");
      if (col < 0) throw std::runtime_error(in + ": a CSV list needs a 'path' column in its header");
      for (size_t r = 1; r < rows.size(); ++r)
        if (static_cast<size_t>(col) < rows[r].size() && !rows[r][col].empty()) {
          const fs::path f(rows[r][col]);
          out.push_back({f.is_absolute() ? f.string() : (p.parent_path() / f).lexically_normal().string()});
        }
    } else {
      out.push_back({in});  // unreadable files get an error record from the loader, not an exception here
    }
  }
  return out;
}

// A heat map's file name: the image's stem and a hash of its whole path, so
// that a/IM1.dcm and b/IM1.dcm do not overwrite each other.
std::string cam_file_name(const std::string& image_path) {
  return util::escape_invalid_utf8(fs::path(image_path).stem().string()) + "_" +
         util::to_hex(util::fnv1a64(image_path)).substr(0, 8) + "_cam.png";
}

// Writes one record per input as soon as its batch is scored, flushed, so
// that a consumer reading the pipe sees results at once and a crash loses
// at most the batch in flight.
class PredictionWriter {
 public:
  PredictionWriter(std::ostream& out, bool csv, std::string model, std::string sha256)
      : out_(out), csv_(csv), model_(std::move(model)), sha256_(std::move(sha256)) {
    if (csv_) out_ << "path,probability,label,threshold,model,model_sha256,cam,error\n" << std::flush;
  }
  void prediction(const std::string& path, double p, const std::string& label, double threshold, const std::string& cam) {
    const std::string safe = util::escape_invalid_utf8(path);
    if (csv_) {
      buffer_ += fmt::format("{},{:.6f},{},{:.6f},{},{},{},\n", data::csv_escape(safe), p, data::csv_escape(label),
                             threshold, data::csv_escape(model_), sha256_, data::csv_escape(cam));
    } else {
      nlohmann::json j{{"path", safe}, {"probability", p}, {"label", label}, {"threshold", threshold},
                       {"model", model_}, {"model_sha256", sha256_}};
      if (!cam.empty()) j["cam"] = cam;
      buffer_ += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
  }
  void error(const std::string& path, const std::string& message) {
    const std::string safe = util::escape_invalid_utf8(path), why = util::escape_invalid_utf8(message);
    if (csv_) buffer_ += fmt::format("{},,,,{},{},,{}\n", data::csv_escape(safe), data::csv_escape(model_), sha256_, data::csv_escape(why));
    else buffer_ += nlohmann::json{{"path", safe}, {"error", why}}.dump() + "\n";
  }
  void flush() {
    out_ << buffer_ << std::flush;
    buffer_.clear();
    if (!out_) throw std::runtime_error("cannot write the predictions (disk full or closed pipe?)");
  }

 private:
  std::ostream& out_;
  bool csv_;
  std::string model_, sha256_, buffer_;
};

}  // namespace

void add_predict_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("predict", "Fracture probability for images (files, folders, CSV lists); optional heat maps");
  struct Args : InferenceFlags {
    std::string out, format, cam;
    std::vector<std::string> inputs;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("inputs", a->inputs, "Image files (JPEG, PNG, BMP, TIFF, DICOM), folders, or CSV lists with a path column")->required();
  add_inference_flags(cmd, *a);
  cmd->add_option("-o,--out", a->out, "Write here instead of standard output (.csv for CSV)");
  cmd->add_option("--format", a->format, "jsonl or csv (default: from --out, else jsonl)")->check(CLI::IsMember({"jsonl", "csv"}));
  cmd->add_option("--cam", a->cam, "Folder for Grad-CAM heat maps of the fracture score (PNG per image)");
  cmd->footer(
      "One record per input, written as each batch is scored: path, probability of the positive class,\n"
      "label at the model's threshold, threshold, model, model_sha256 (and cam: the heat map's file).\n"
      "An input that cannot be read gets {\"path\": ..., \"error\": ...} instead, and is named on stderr.\n"
      "Exit status: 0 all scored, 1 some inputs failed (the rest scored), 2 usage or fatal error.\n"
      "Research use only - not a medical device.\n\n"
      "Examples:\n  fracture predict IMG0001.jpg                     # the built-in FracAtlas model\n"
      "  fracture predict -m runs/lite0/best.safetensors scans/ --out predictions.csv\n"
      "  fracture predict -m runs/lite0/best.safetensors IMG0001.jpg --cam heatmaps/");
  cmd->callback([a] {
    ReadyModel ready = load_for_inference(*a);  // not a structured binding: the lambdas below capture it
    const auto& m = ready.model;
    const auto& device = ready.device;
    const auto& lo = ready.loader;
    const auto samples = collect_inputs(a->inputs);
    if (samples.empty()) throw std::runtime_error("no image files in the inputs given");
    if (!a->cam.empty()) fs::create_directories(a->cam);
    const bool csv = a->format == "csv" || (a->format.empty() && has_csv_extension(a->out));
    std::ofstream file;
    if (!a->out.empty()) {
      file.open(a->out, std::ios::binary | std::ios::trunc);
      if (!file) throw std::runtime_error(a->out + ": cannot open for writing");
    }
    PredictionWriter writer(a->out.empty() ? std::cout : file, csv, fs::path(a->model).filename().string(), m.sha256);
    const auto& classes = m.info.class_names;
    const int64_t positive = static_cast<int64_t>(classes.size()) - 1;
    data::DataLoader loader(samples, lo);
    size_t scored = 0, failed = 0;
    const auto start = std::chrono::steady_clock::now();
    auto fail = [&](const std::string& path, const std::string& message) {
      writer.error(path, message);
      ++failed;
    };
    train::predict_batches(*m.net, loader, device, a->tta, [&](const train::ScoredBatch& b) {
      // Records in input order: the batch's scored images and its failures merged.
      size_t next_failure = 0;
      auto failures_before = [&](size_t index) {
        for (; next_failure < b.failures.size() && b.failures[next_failure].first < index; ++next_failure)
          fail(samples[b.failures[next_failure].first].path, b.failures[next_failure].second);  // named on stderr
      };
      for (size_t k = 0; k < b.indices.size(); ++k) {
        const size_t i = b.indices[k];
        failures_before(i);
        const auto row = b.probabilities[static_cast<int64_t>(k)];
        const double p = row[positive].item<float>();
        if (!std::isfinite(p)) {
          spdlog::warn("{}: the model gave no finite probability (NaN)", samples[i].path);
          fail(samples[i].path, samples[i].path + ": the model gave no finite probability (NaN)");
          continue;
        }
        const bool is_pos = classes.size() == 2 ? p >= m.info.threshold : row.argmax().item<int64_t>() == positive;
        std::string cam;
        if (!a->cam.empty()) {
          try {
            cam = (fs::path(a->cam) / cam_file_name(samples[i].path)).string();
            const cv::Mat map = explain::grad_cam(*m.net, loader.load_one(i).unsqueeze(0).to(device), positive);
            data::DecodeOptions decode;
            decode.min_side = 512;
            decode.max_pixels = lo.max_pixels;
            auto picture = data::decode_image(samples[i].path, decode).pixels;
            const double scale = 1024.0 / std::max(picture.cols, picture.rows);
            if (scale < 1) cv::resize(picture, picture, {}, scale, scale, cv::INTER_AREA);
            std::vector<uchar> png;
            cv::imencode(".png", explain::overlay_heatmap(picture, map), png);
            util::write_file_atomic(cam, std::string(png.begin(), png.end()));
          } catch (const c10::Error& e) {  // the prediction stands; its heat map is missing
            spdlog::error("{}: heat map not written: {}", samples[i].path, e.what_without_backtrace());
            cam.clear();
            note_failed_inputs();
          } catch (const std::exception& e) {
            spdlog::error("{}: heat map not written: {}", samples[i].path, e.what());
            cam.clear();
            note_failed_inputs();
          }
        }
        writer.prediction(samples[i].path, p, is_pos ? classes[positive] : classes[0], m.info.threshold, cam);
        ++scored;
      }
      failures_before(samples.size());
      writer.flush();
    }, samples.size() > 64 ? "predicting" : "");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("predicted {} images in {:.3f} s ({:.2f} img/s, batch {})", scored, seconds,
                 static_cast<double>(scored) / seconds, a->batch_size);
    if (!a->out.empty()) spdlog::info("wrote {} predictions to {}", scored, a->out);
    if (!a->cam.empty()) spdlog::info("heat maps in {}", a->cam);
    if (failed > 0) {
      spdlog::warn("{} of {} inputs could not be scored (each named above, with an error record)", failed, samples.size());
      note_failed_inputs();
    }
  });
}

}  // namespace fracture::cli
