// libFuzzer target: a YOLO label file's text -> boxes (and their cell mask),
// or an error naming the file and line.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fracture/data/boxes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto boxes = fracture::data::parse_yolo_boxes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.txt");
    fracture::data::box_mask(boxes, 12, 12);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
