// libFuzzer target: a CSV manifest's text -> a data set, or an error naming
// the file and line.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fracture/data/csv.h"
#include "fracture/data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    fracture::data::parse_csv(text, "fuzz.csv");
    fracture::data::parse_manifest(text, "/nonexistent/fuzz.csv");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
