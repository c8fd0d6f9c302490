#pragma once
// Decoding radiographs and photographs into 8-bit pixels.
//
// JPEG, PNG, BMP and TIFF go through OpenCV; DICOM through DCMTK. The format
// is told by the file's first bytes, not its name. 16-bit images are windowed
// to 8 bits (DICOM: its VOI window if it has one, else min-max; others:
// min-max), because ImageNet-pretrained networks take 8-bit-range input.
#include <opencv2/core.hpp>

#include <stdexcept>
#include <cstdint>
#include <string>
#include <vector>

namespace fracture::data {

enum class ImageFormat { Unknown, Jpeg, Png, Bmp, Tiff, Dicom };
const char* format_name(ImageFormat f);
// Told by the first bytes (132 are enough); DICOM with or without its
// 128-byte preamble.
ImageFormat sniff_format(const std::string& bytes);
// Whether a file in a folder is taken as an image: an image extension
// (.jpg .jpeg .png .bmp .tif .tiff .dcm .dicom, any case), or else content
// that sniffs as one (PACS exports often have no extension at all).
bool is_image_file(const std::string& path);
// The image files below `dir` (recursive, sorted), by is_image_file.
std::vector<std::string> image_files_in(const std::string& dir);

// Defaults of the limits below: 100 megapixels is 4x the largest
// radiographs (digital detectors reach about 4300 x 4300 and 25 MP); a
// 30000 x 30000 PNG of 875 KB would otherwise decode to 1 GB.
inline constexpr int64_t kDefaultMaxPixels = 100'000'000;
inline constexpr uint64_t kDefaultMaxFileBytes = uint64_t{1} << 30;

// Thrown for a file that cannot be read; what() names the file and problem,
// kind() says which sort of problem it is (the server answers each with its
// own HTTP status).
class ImageError : public std::runtime_error {
 public:
  enum class Kind {
    Corrupt,      // a known format whose data does not decode (damaged, crafted, cut short)
    Empty,        // no bytes at all
    NotAnImage,   // none of the formats read
    TooLarge,     // more bytes or pixels than the limits
    Unsupported,  // a known format in a variant not read (a DICOM codec not built in)
    Unreadable,   // the file itself could not be opened or read
  };
  explicit ImageError(const std::string& what, Kind kind = Kind::Corrupt) : std::runtime_error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct DecodeOptions {
  bool color = false;  // false: one grey channel (radiographs); true: RGB
  // If > 0, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as its
  // shorter side stays >= this (libjpeg's DCT scaling: several times faster
  // for the 2304x2880 scans than a full decode followed by a resize).
  int min_side = 0;
  // Refused before decoding, from the file's header: images of more pixels
  // (width x height, one frame) and files of more bytes.
  int64_t max_pixels = kDefaultMaxPixels;
  uint64_t max_file_bytes = kDefaultMaxFileBytes;
};

struct DecodedImage {
  cv::Mat pixels;          // CV_8UC1 (grey) or CV_8UC3 in RGB order
  cv::Size original_size;  // before any reduced-scale decoding
  int reduction = 1;       // 1, 2, 4 or 8
  bool truncated = false;  // JPEG without its end marker: decoded what was there
  ImageFormat format = ImageFormat::Unknown;
};

// The error for a JPEG without its end marker where a score is asked for:
// its missing part would be filled in, so the score would not be the image's.
std::string truncated_message(const std::string& origin);

DecodedImage decode_image(const std::string& path, const DecodeOptions& options = {});
DecodedImage decode_image_bytes(const std::string& bytes, const std::string& origin, const DecodeOptions& options = {});

// Width and height from a JPEG's SOF marker without decoding; {0,0} if absent.
cv::Size jpeg_size(const std::string& bytes);
// Width and height from a JPEG, PNG, BMP or TIFF header, without decoding;
// {0,0} where the header does not say.
cv::Size header_size(const std::string& bytes, ImageFormat format);

}  // namespace fracture::data
