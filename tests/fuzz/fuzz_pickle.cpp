// libFuzzer target: the state-dict pickle interpreter alone (the zip layer
// around it rejects most mutations by its checksums). Storage records are
// synthesised: "data/K" holds (first byte of K) x 3 bytes, so records whose
// size disagrees with the pickle's declaration are common.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fracture/models/torch_zip.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fracture::models::RecordReader records = [](const std::string& name) {
    const size_t n = name.size() > 5 ? static_cast<unsigned char>(name[5]) * 3u : 0u;
    return std::string(n, '\x3f');
  };
  try {
    fracture::models::parse_state_dict_pickle(std::string(reinterpret_cast<const char*>(data), size), records, "fuzz");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
