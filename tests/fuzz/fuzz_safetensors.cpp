// libFuzzer target: safetensors bytes -> tensors, or an error naming the problem.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fracture/models/weights_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    fracture::models::parse_safetensors(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
