#include "fracture/train/int8_record.h"

#include <cmath>
#include <stdexcept>

namespace fracture::train {

std::vector<std::vector<float>> int8_ranges_of(const ModelInfo& info, const std::string& origin) {
  if (!info.extra.contains(kInt8CalibrationKey)) return {};
  std::vector<float> ranges;
  try {
    ranges = info.extra.at(kInt8CalibrationKey).at("activation_max").get<std::vector<float>>();
  } catch (const std::exception& e) {
    throw std::runtime_error(origin + ": int8 calibration is malformed (" + e.what() + ")");
  }
  for (float r : ranges)
    if (!std::isfinite(r) || r <= 0)
      throw std::runtime_error(origin + ": int8 calibration holds a range that is not finite and positive");
  const auto networks = static_cast<size_t>(info.members);
  if (ranges.empty()) return {};
  if (ranges.size() % networks != 0)
    throw std::runtime_error(origin + ": int8 calibration holds " + std::to_string(ranges.size()) +
                             " ranges, which do not split evenly among its " + std::to_string(networks) + " networks");
  const size_t each = ranges.size() / networks;
  std::vector<std::vector<float>> out;
  for (size_t k = 0; k < networks; ++k) out.emplace_back(ranges.begin() + k * each, ranges.begin() + (k + 1) * each);
  return out;
}

bool int8_check_passed(const ModelInfo& info) {
  if (!info.extra.contains(kInt8CalibrationKey)) return false;
  const auto& c = info.extra.at(kInt8CalibrationKey);
  return c.contains("check") && c.at("check").value("passed", false);
}

std::string int8_check_cpu(const ModelInfo& info) {
  if (!int8_check_passed(info)) return "";
  const auto& check = info.extra.at(kInt8CalibrationKey).at("check");
  return check.contains("cpu") && check.at("cpu").is_string() ? check.at("cpu").get<std::string>() : "";
}

}  // namespace fracture::train
