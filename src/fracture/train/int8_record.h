#pragma once
// The int8 calibration as a model file records it (written by
// export/int8_calibration): the activation ranges the int8 program
// quantises to, and the accuracy check's verdict with the family of int8
// kernels it ran on. Read here, below the Predictor, which needs them to run
// int8 and to choose a precision.
#include <string>
#include <vector>

#include "fracture/train/checkpoint.h"

namespace fracture::train {

// The description key that holds the calibration.
inline constexpr const char* kInt8CalibrationKey = "int8_calibration";

// The ranges in a model's description, one list per network; empty when it
// was never calibrated. Throws naming `origin` when they are there but
// malformed (or do not split evenly among an ensemble's members).
std::vector<std::vector<float>> int8_ranges_of(const ModelInfo& info, const std::string& origin);
// Whether the model's calibration passed its accuracy check.
bool int8_check_passed(const ModelInfo& info);
// The int8 kernels' family the check ran on; "" when it was not recorded
// (a check made before issue 37), which covers no CPU.
std::string int8_check_cpu(const ModelInfo& info);

}  // namespace fracture::train
