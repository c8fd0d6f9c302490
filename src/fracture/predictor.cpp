#include "fracture/predictor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "fracture/data/loader.h"
#include "fracture/explain/gradcam.h"
#include "fracture/explain/localisation.h"
#include "fracture/models/onednn_body.h"
#include "fracture/train/inference.h"
#include "fracture/train/int8_record.h"
#include "fracture/util/paths.h"

namespace fracture {

struct Predictor::State {
  PredictorOptions options;
  train::LoadedNetworks model;  // one network, or an ensemble's members
  torch::Device device{torch::kCPU};
  data::LoaderOptions loader;
  std::vector<std::unique_ptr<models::OneDnnBody>> bodies;  // one per network; empty: LibTorch's modules
  std::string engine;

  models::ClassifierImpl& first() { return *model.nets.front(); }
  torch::Tensor forward_one(size_t k, const torch::Tensor& x) {
    auto& net = *model.nets[k];
    return bodies.empty() ? net.forward(x) : net.forward_head(bodies[k]->features(x));
  }
  // Logits; an ensemble's are its members' mean log-probabilities, whose
  // softmax is their normalised geometric mean (train::combine_probabilities:
  // for two classes, the mean of the members' log-odds).
  torch::Tensor forward(const torch::Tensor& x) {
    if (model.nets.size() == 1) return forward_one(0, x);
    torch::Tensor sum;
    for (size_t k = 0; k < model.nets.size(); ++k) {
      auto log_p = torch::log_softmax(forward_one(k, x), 1);
      sum = k == 0 ? log_p : sum + log_p;
    }
    return sum / static_cast<double>(model.nets.size());
  }
  // auto: int8 where the model's int8 calibration passed its accuracy check
  // and the program can run it here, else fp32; `why` says which and why.
  models::Precision auto_precision(bool fused, std::string& why) {
    if (!fused || !device.is_cpu()) why = "auto: fp32, int8 runs only as the oneDNN program on the CPU";
    else if (!train::int8_check_passed(model.info)) why = "auto: fp32, the model has no passed int8 check";
    else if (auto no = models::onednn_body_unsupported(first(), models::Precision::int8); !no.empty())
      why = "auto: fp32, " + no;
    else if (const auto checked = train::int8_check_cpu(model.info); checked != models::int8_cpu_class())
      // int8 kernels differ by CPU family; a check made on one does not vouch for another.
      why = "auto: fp32, the model's int8 check ran on " + (checked.empty() ? "an unrecorded CPU" : checked + " int8 kernels") +
            ", this CPU runs " + models::int8_cpu_class() + " ones (`fracture calibrate` here checks it for this CPU)";
    else {
      why = "auto: int8, the model's int8 check passed on this CPU's int8 kernels (" + checked + ")";
      return models::Precision::int8;
    }
    return models::Precision::fp32;
  }

  // The oneDNN body where it can run; bf16 or int8 where it cannot is an error (there is no other path for them).
  void choose_engine(bool fused, models::Precision precision, const std::string& model_path) {
    std::string why = "not asked for";
    if (!device.is_cpu()) why = "not on the CPU";
    else if (fused) why = models::onednn_body_unsupported(first(), precision);
    if (why.empty()) {
      std::vector<std::vector<float>> ranges(model.nets.size());  // one list per network
      if (precision == models::Precision::int8) {
        ranges = train::int8_ranges_of(model.info, model_path);
        if (ranges.empty())
          throw std::invalid_argument(model_path + " has no int8 calibration: make a calibrated copy with "
                                      "`fracture calibrate -m " + model_path + " --data SPLIT.csv -o OUT.safetensors`");
      }
      for (size_t k = 0; k < model.nets.size(); ++k)
        bodies.push_back(std::make_unique<models::OneDnnBody>(*model.nets[k], precision, ranges[k]));
      engine = "oneDNN program, " + models::precision_name(precision);
    } else {
      if (precision != models::Precision::fp32)
        throw std::invalid_argument("--precision " + models::precision_name(precision) +
                                    " needs the oneDNN program, and it cannot run: " + why);
      engine = "LibTorch (no oneDNN program: " + why + ")";
    }
    if (model.nets.size() > 1) engine = "ensemble of " + std::to_string(model.nets.size()) + " networks, " + engine;
  }
};

Predictor::Predictor(PredictorOptions options) : s_(std::make_unique<State>()) {
  options.model = util::resolve_model(options.model);
  s_->device = train::pick_device(options.device);  // a bad device or precision fails before the model loads
  const bool automatic = options.precision == "auto";
  auto precision = automatic ? models::Precision::fp32 : models::parse_precision(options.precision);
  s_->model = train::load_networks(options.model);
  for (auto& net : s_->model.nets) train::prepare_for_inference(*net, s_->device);
  std::string chosen;
  if (automatic) precision = s_->auto_precision(options.fused, chosen);
  s_->choose_engine(options.fused, precision, options.model);
  if (automatic) s_->engine += " (" + chosen + ")";
  spdlog::debug("{}: {}", options.model, s_->engine);
  s_->loader.batch_size = options.batch_size;
  s_->loader.workers = options.workers;
  s_->loader.preprocess = s_->model.info.preprocess;
  s_->loader.max_pixels = options.max_pixels;
  s_->options = std::move(options);
}

Predictor::~Predictor() = default;

const train::ModelInfo& Predictor::info() const { return s_->model.info; }
const std::vector<std::string>& Predictor::classes() const { return s_->model.info.class_names; }
const std::string& Predictor::model_path() const { return s_->options.model; }
std::string Predictor::model_name() const { return std::filesystem::path(s_->options.model).filename().string(); }
const std::string& Predictor::sha256() const { return s_->model.sha256; }
const std::string& Predictor::engine() const { return s_->engine; }

Prediction Predictor::decide(std::vector<double> probabilities) const {
  Prediction p;
  for (double v : probabilities)
    if (!std::isfinite(v)) {
      p.error = "the model gave no finite probability (NaN)";
      return p;
    }
  const auto& names = classes();
  if (binary()) {
    p.probability = probabilities[1];
    p.threshold = info().threshold;
    p.label = p.probability >= *p.threshold ? names[1] : names[0];
  } else {
    size_t best = 0;
    for (size_t c = 1; c < probabilities.size(); ++c)
      if (probabilities[c] > probabilities[best]) best = c;
    p.probability = probabilities[best];
    p.label = names[best];
  }
  p.probabilities = std::move(probabilities);
  return p;
}

namespace {

std::vector<double> row_of(const torch::Tensor& probabilities, int64_t k) {
  const auto row = probabilities[k].to(torch::kDouble).contiguous();
  return {row.data_ptr<double>(), row.data_ptr<double>() + row.numel()};
}

Prediction named(Prediction p, const std::string& path) {
  p.path = path;
  if (!p.error.empty()) p.error = path + ": " + p.error;
  return p;
}

}  // namespace

void Predictor::predict_files(const std::vector<std::string>& paths,
                              const std::function<void(const std::vector<Prediction>&)>& on_batch,
                              const std::string& progress_label) {
  std::vector<data::Sample> samples;
  for (const auto& path : paths) samples.push_back({path});
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  auto loading = s_->loader;
  loading.refuse_truncated = true;  // an image asked about is scored whole or not at all
  data::DataLoader loader(samples, loading);
  auto batch_start = std::chrono::steady_clock::now();
  const train::Forward forward = [&](const torch::Tensor& x) { return s_->forward(x); };
  train::predict_batches(s_->first(), loader, s_->device, s_->options.tta, [&](const train::ScoredBatch& b) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - batch_start).count() /
                      static_cast<double>(std::max<size_t>(1, b.indices.size()));
    // The batch's scored images and its failures, merged back into input order.
    std::vector<std::pair<size_t, Prediction>> out;
    for (size_t k = 0; k < b.indices.size(); ++k) {
      out.emplace_back(b.indices[k], named(decide(row_of(b.probabilities, static_cast<int64_t>(k))), paths[b.indices[k]]));
      out.back().second.milliseconds = ms;
      if (!out.back().second.ok()) spdlog::warn("{}", out.back().second.error);  // read, but not scored (NaN)
    }
    for (const auto& [index, message] : b.failures) {
      Prediction failed;
      failed.path = paths[index];
      failed.error = message;  // names the file already
      out.emplace_back(index, std::move(failed));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& c) { return a.first < c.first; });
    std::vector<Prediction> batch;
    for (auto& [index, p] : out) batch.push_back(std::move(p));
    on_batch(batch);
    batch_start = std::chrono::steady_clock::now();  // the caller's work (heat maps, writing) is not the batch's
  }, progress_label, forward);
}

namespace {

// An image as the network sees it: decoded as the loader decodes files, so
// that bytes and files give the same probabilities.
torch::Tensor input_of(const data::DecodedImage& image, const data::LoaderOptions& loader) {
  return data::to_tensor(data::preprocess(image.pixels, loader.preprocess), loader.preprocess.mean,
                         loader.preprocess.std);
}

}  // namespace

PreparedImage Predictor::prepare(const std::string& bytes, const std::string& name) const {
  const auto image = data::decode_image_bytes(bytes, name, data::decode_options_for(s_->loader));
  if (image.truncated) throw data::ImageError(data::truncated_message(name));
  return {name, input_of(image, s_->loader)};
}

std::vector<Prediction> Predictor::score(const std::vector<PreparedImage>& images) {
  if (images.empty()) return {};
  const auto start = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> inputs;
  for (const auto& image : images) inputs.push_back(image.input);
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  torch::NoGradGuard no_grad;
  const auto x = torch::stack(inputs).to(s_->device);
  // In the slices predict's batches use: on the CPU a few images a pass are faster than many.
  auto forward = [&](const torch::Tensor& part) { return s_->forward(part); };
  auto p = torch::softmax(train::forward_in_chunks(forward, x), 1);
  if (s_->options.tta) p = (p + torch::softmax(train::forward_in_chunks(forward, x.flip({3})), 1)) / 2;
  p = p.to(torch::kCPU);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() /
                    static_cast<double>(images.size());
  std::vector<Prediction> out;
  for (size_t k = 0; k < images.size(); ++k) {
    out.push_back(named(decide(row_of(p, static_cast<int64_t>(k))), images[k].name));
    out.back().milliseconds = ms;
  }
  return out;
}

Prediction Predictor::predict_bytes(const std::string& bytes, const std::string& name) {
  const auto start = std::chrono::steady_clock::now();
  PreparedImage image;
  try {
    image = prepare(bytes, name);
  } catch (const std::exception& e) {
    Prediction failed;
    failed.path = name;
    failed.error = e.what();
    return failed;
  }
  Prediction out = score({image}).front();
  out.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

torch::Tensor Predictor::probabilities_of(const std::vector<data::Sample>& samples, const std::string& progress_label,
                                          std::vector<std::string>* failures) {
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  data::DataLoader loader(samples, s_->loader);
  auto p = train::predict_probabilities(s_->first(), loader, s_->device, s_->options.tta, progress_label,
                                        [&](const torch::Tensor& x) { return s_->forward(x); });
  if (failures) *failures = loader.stats().failures;
  return p.to(torch::kDouble).contiguous();
}

nlohmann::json Predictor::pointing_game(const std::vector<data::Sample>& samples) {
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  const auto game = explain::pointing_game(s_->model.nets, samples, s_->loader, s_->device);
  return game.images > 0 ? game.to_json() : nlohmann::json();
}

int Predictor::class_index(const std::string& name) const {
  const auto& names = classes();
  const auto it = std::find(names.begin(), names.end(), name);
  return it == names.end() ? -1 : static_cast<int>(it - names.begin());
}

int Predictor::heat_map_class(const Prediction& p) const { return binary() ? 1 : std::max(0, class_index(p.label)); }

namespace {

HeatMap heat_map_over(const std::vector<models::Classifier>& nets, const data::DecodedImage& input, const data::LoaderOptions& loader,
                      torch::Device device, const data::DecodedImage& picture_image, int target_class) {
  HeatMap h;
  h.target_class = target_class;
  const cv::Mat map = explain::grad_cam(nets, input_of(input, loader).unsqueeze(0).to(device), target_class);
  cv::Point peak;
  cv::minMaxLoc(map, nullptr, nullptr, nullptr, &peak);
  h.peak_x = (peak.x + 0.5) / map.cols;
  h.peak_y = (peak.y + 0.5) / map.rows;
  cv::Mat picture = picture_image.pixels;
  const double scale = 1024.0 / std::max(picture.cols, picture.rows);
  if (scale < 1) cv::resize(picture, picture, {}, scale, scale, cv::INTER_AREA);
  h.overlay = explain::overlay_heatmap(picture, map);
  h.picture = picture;
  return h;
}

data::DecodeOptions picture_options(const data::LoaderOptions& loader) {
  data::DecodeOptions d;
  d.min_side = 512;
  d.max_pixels = loader.max_pixels;
  return d;
}

}  // namespace

HeatMap Predictor::heat_map(const std::string& path, int target_class) {
  const auto input = data::decode_image(path, data::decode_options_for(s_->loader));
  const auto picture = data::decode_image(path, picture_options(s_->loader));
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  return heat_map_over(s_->model.nets, input, s_->loader, s_->device, picture, target_class);
}

HeatMap Predictor::heat_map_of_bytes(const std::string& bytes, const std::string& name, int target_class) {
  const auto input = data::decode_image_bytes(bytes, name, data::decode_options_for(s_->loader));
  const auto picture = data::decode_image_bytes(bytes, name, picture_options(s_->loader));
  std::lock_guard<std::recursive_mutex> lock(net_mu_);
  return heat_map_over(s_->model.nets, input, s_->loader, s_->device, picture, target_class);
}

nlohmann::ordered_json to_json(const Prediction& p, const Predictor& model) {
  const std::string path = util::escape_invalid_utf8(p.path);
  if (!p.ok()) return {{"path", path}, {"error", util::escape_invalid_utf8(p.error)}};
  // Fields in a reading order, and classes in the model's order (not sorted by name).
  nlohmann::ordered_json j{{"path", path}, {"label", p.label}, {"probability", p.probability}};
  if (p.threshold) j["threshold"] = *p.threshold;
  const auto& classes = model.classes();
  for (size_t c = 0; c < classes.size(); ++c) j["probabilities"][classes[c]] = p.probabilities[c];
  j["model"] = model.model_name();
  j["model_sha256"] = model.sha256();
  return j;
}

void add_type(nlohmann::ordered_json& j, const Prediction& type, const Predictor& type_model) {
  if (!type.ok()) return;  // meaningful for fractured images only (the type model has no normal class)
  j["type"] = type.label;
  const auto& types = type_model.classes();
  for (size_t c = 0; c < types.size(); ++c) j["types"][types[c]] = type.probabilities[c];
}

}  // namespace fracture
