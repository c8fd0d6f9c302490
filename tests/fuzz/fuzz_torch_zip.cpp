// libFuzzer target: a torch.save zip archive's bytes -> a state dict, or an error.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fracture/models/torch_zip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    fracture::models::parse_torch_zip_state_dict(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
