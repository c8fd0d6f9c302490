// libFuzzer target: image bytes (JPEG, PNG, BMP, TIFF or DICOM, told by
// content) -> 8-bit pixels, or an ImageError naming the problem. The pixel
// cap is lowered so that the fuzzer explores headers, not big allocations.
#include <cstdint>
#include <string>

#include "fracture/data/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fracture::data::DecodeOptions options;
  options.max_pixels = 4'000'000;
  options.min_side = (size & 1) ? 64 : 0;  // reduced-scale JPEG decoding too
  try {
    fracture::data::decode_image_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz", options);
  } catch (const fracture::data::ImageError&) {
  }
  return 0;
}
