#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "fracture/cli/commands.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/data/csv.h"
#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/data/loader.h"
#include "fracture/explain/gradcam.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/util/atomic_file.h"

namespace fs = std::filesystem;

namespace fracture::cli {
namespace {

// Files as given; folders searched recursively for images; .csv files read as manifests.
std::vector<data::Sample> collect_inputs(const std::vector<std::string>& inputs) {
  std::vector<data::Sample> out;
  for (const auto& in : inputs) {
    const fs::path p(in);
    if (fs::is_directory(p)) {
      std::vector<std::string> files;
      for (const auto& e : fs::recursive_directory_iterator(p)) {
        std::string ext = e.path().extension().string();
        for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".tif" ||
                                    ext == ".tiff" || ext == ".dcm" || ext == ".dicom"))
          files.push_back(e.path().string());
      }
      std::sort(files.begin(), files.end());
      for (auto& f : files) out.push_back({f});
    } else if (p.extension() == ".csv") {  // any CSV with a "path" column; relative to the CSV's folder
      const auto rows = data::parse_csv(util::read_file(in));
      size_t col = 0;
      while (!rows.empty() && col < rows[0].size() && rows[0][col] != "path") ++col;
      if (rows.empty() || col == rows[0].size()) throw std::runtime_error(in + ": a CSV list needs a 'path' column");
      for (size_t r = 1; r < rows.size(); ++r)
        if (col < rows[r].size() && !rows[r][col].empty()) {
          const fs::path f(rows[r][col]);
          out.push_back({f.is_absolute() ? f.string() : (p.parent_path() / f).lexically_normal().string()});
        }
    } else {
      out.push_back({in});  // unreadable files are reported by the loader, not here
    }
  }
  return out;
}

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
      "Each line: path, probability of the positive class, label at the model's threshold, threshold, model.\n"
      "Unreadable files are reported on stderr and skipped. Research use only - not a medical device.\n\n"
      "Examples:\n  fracture predict IMG0001.jpg                     # the built-in FracAtlas model\n"
      "  fracture predict -m runs/lite0/best.safetensors scans/ --out predictions.csv\n"
      "  fracture predict -m runs/lite0/best.safetensors IMG0001.jpg --cam heatmaps/");
  cmd->callback([a] {
    auto [m, device, lo] = load_for_inference(*a);
    const auto samples = collect_inputs(a->inputs);
    const auto start = std::chrono::steady_clock::now();
    data::DataLoader loader(samples, lo);
    auto probs = train::predict_probabilities(*m.net, loader, device, a->tta, samples.size() > 64 ? "predicting" : "");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("predicted {} images in {:.3f} s ({:.2f} img/s, batch {})", samples.size(), seconds,
                 static_cast<double>(samples.size()) / seconds, a->batch_size);
    const bool csv = a->format == "csv" || (a->format.empty() && fs::path(a->out).extension() == ".csv");
    const int64_t positive = static_cast<int64_t>(m.info.class_names.size()) - 1;
    std::string text = csv ? "path,probability,label,threshold,model\n" : "";
    const std::string model_name = fs::path(a->model).filename().string();
    int written = 0;
    if (!a->cam.empty()) fs::create_directories(a->cam);
    for (size_t i = 0; i < samples.size(); ++i) {
      const float p = probs[static_cast<int64_t>(i)][positive].item<float>();
      if (std::isnan(p)) continue;
      const bool is_pos = m.info.class_names.size() == 2 ? p >= m.info.threshold
                                                         : probs[static_cast<int64_t>(i)].argmax().item<int64_t>() == positive;
      const std::string label = is_pos ? m.info.class_names[positive] : m.info.class_names[0];
      if (csv) {
        text += fmt::format("{},{:.6f},{},{:.6f},{}\n", data::csv_escape(samples[i].path), p, data::csv_escape(label),
                            m.info.threshold, data::csv_escape(model_name));
      } else {
        text += nlohmann::json{{"path", samples[i].path}, {"probability", p}, {"label", label},
                               {"threshold", m.info.threshold}, {"model", model_name}}.dump() + "\n";
      }
      ++written;
      if (!a->cam.empty()) {
        auto x = loader.load_one(i).unsqueeze(0).to(device);
        const cv::Mat cam = explain::grad_cam(*m.net, x, positive);
        auto picture = data::decode_image(samples[i].path, {false, 512}).pixels;
        const double scale = 1024.0 / std::max(picture.cols, picture.rows);
        if (scale < 1) cv::resize(picture, picture, {}, scale, scale, cv::INTER_AREA);
        std::vector<uchar> png;
        cv::imencode(".png", explain::overlay_heatmap(picture, cam), png);
        const std::string out = (fs::path(a->cam) / (fs::path(samples[i].path).stem().string() + "_cam.png")).string();
        util::write_file_atomic(out, std::string(png.begin(), png.end()));
      }
    }
    if (a->out.empty()) std::cout << text;
    else util::write_file_atomic(a->out, text);
    const auto st = loader.stats();
    if (st.failed > 0) spdlog::warn("{} of {} files could not be read (listed above)", st.failed, samples.size());
    if (!a->out.empty()) spdlog::info("wrote {} predictions to {}", written, a->out);
    if (!a->cam.empty()) spdlog::info("heat maps in {}", a->cam);
    if (written == 0) throw std::runtime_error("no image could be read");
  });
}

}  // namespace fracture::cli
