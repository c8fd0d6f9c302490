#include "fracture/data/image_io.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fracture/data/dicom.h"
#include "fracture/util/atomic_file.h"

namespace fracture::data {
namespace {

bool starts_with(const std::string& s, const char* magic, size_t n) {
  return s.size() >= n && s.compare(0, n, magic, n) == 0;
}

// A complete JPEG ends with the EOI marker FF D9; some writers pad after it
// (zeros, 0xFF fill, whitespace), so padding is skipped first.
bool jpeg_has_end_marker(const std::string& b) {
  size_t i = b.size();
  auto padding = [](unsigned char c) { return c == 0x00 || c == 0xFF || c == ' ' || c == '\n' || c == '\r'; };
  while (i > 0 && padding(static_cast<unsigned char>(b[i - 1]))) --i;
  return i >= 2 && static_cast<unsigned char>(b[i - 2]) == 0xFF && static_cast<unsigned char>(b[i - 1]) == 0xD9;
}

cv::Mat to_8bit(const cv::Mat& m) {
  if (m.depth() == CV_8U) return m;
  cv::Mat out;
  double lo, hi;
  cv::minMaxLoc(m.reshape(1), &lo, &hi);
  const double scale = hi > lo ? 255.0 / (hi - lo) : 0.0;
  m.convertTo(out, CV_8U, scale, -lo * scale);
  return out;
}

cv::Mat to_channels(const cv::Mat& m, bool color) {
  cv::Mat out;
  if (!color) {
    if (m.channels() == 1) return m;
    cv::cvtColor(m, out, m.channels() == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
  } else {
    if (m.channels() == 1) cv::cvtColor(m, out, cv::COLOR_GRAY2RGB);
    else cv::cvtColor(m, out, m.channels() == 4 ? cv::COLOR_BGRA2RGB : cv::COLOR_BGR2RGB);
  }
  return out;
}

}  // namespace

const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::Jpeg: return "JPEG";
    case ImageFormat::Png: return "PNG";
    case ImageFormat::Bmp: return "BMP";
    case ImageFormat::Tiff: return "TIFF";
    case ImageFormat::Dicom: return "DICOM";
    default: return "unknown";
  }
}

ImageFormat sniff_format(const std::string& b) {
  if (starts_with(b, "\xFF\xD8\xFF", 3)) return ImageFormat::Jpeg;
  if (starts_with(b, "\x89PNG", 4)) return ImageFormat::Png;
  if (starts_with(b, "BM", 2)) return ImageFormat::Bmp;
  if (starts_with(b, "II*\0", 4) || starts_with(b, "MM\0*", 4)) return ImageFormat::Tiff;
  if (b.size() > 132 && b.compare(128, 4, "DICM") == 0) return ImageFormat::Dicom;
  return ImageFormat::Unknown;
}

cv::Size jpeg_size(const std::string& b) {
  size_t i = 2;
  while (i + 9 < b.size()) {
    if (static_cast<unsigned char>(b[i]) != 0xFF) return {0, 0};
    const unsigned char marker = static_cast<unsigned char>(b[i + 1]);
    if (marker == 0xFF) { ++i; continue; }  // fill byte
    const size_t len = (static_cast<unsigned char>(b[i + 2]) << 8) | static_cast<unsigned char>(b[i + 3]);
    const bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (sof) {
      const int h = (static_cast<unsigned char>(b[i + 5]) << 8) | static_cast<unsigned char>(b[i + 6]);
      const int w = (static_cast<unsigned char>(b[i + 7]) << 8) | static_cast<unsigned char>(b[i + 8]);
      return {w, h};
    }
    i += 2 + len;
  }
  return {0, 0};
}

DecodedImage decode_image_bytes(const std::string& bytes, const std::string& origin, const DecodeOptions& o) {
  DecodedImage out;
  out.format = sniff_format(bytes);
  if (bytes.empty()) throw ImageError(origin + ": empty file");
  if (out.format == ImageFormat::Unknown)
    throw ImageError(origin + ": not a JPEG, PNG, BMP, TIFF or DICOM file");
  if (out.format == ImageFormat::Dicom) {
    cv::Mat m = decode_dicom(bytes, origin);
    out.original_size = m.size();
    out.pixels = to_channels(m, o.color);
    return out;
  }
  int flags = o.color ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE;
  if (out.format == ImageFormat::Jpeg) {
    out.truncated = !jpeg_has_end_marker(bytes);
    out.original_size = jpeg_size(bytes);
    if (o.min_side > 0 && out.original_size.width > 0) {
      const int shorter = std::min(out.original_size.width, out.original_size.height);
      for (int f : {8, 4, 2})
        if (shorter / f >= o.min_side) { out.reduction = f; break; }
      static const int grey[] = {0, 0, cv::IMREAD_REDUCED_GRAYSCALE_2, 0, cv::IMREAD_REDUCED_GRAYSCALE_4, 0, 0, 0,
                                 cv::IMREAD_REDUCED_GRAYSCALE_8};
      static const int rgb[] = {0, 0, cv::IMREAD_REDUCED_COLOR_2, 0, cv::IMREAD_REDUCED_COLOR_4, 0, 0, 0,
                                cv::IMREAD_REDUCED_COLOR_8};
      if (out.reduction > 1) flags = o.color ? rgb[out.reduction] : grey[out.reduction];
    }
  } else {
    flags = cv::IMREAD_ANYDEPTH | (o.color ? cv::IMREAD_ANYCOLOR : cv::IMREAD_GRAYSCALE);
  }
  cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data()));
  cv::Mat m;
  try {
    m = cv::imdecode(raw, flags);
  } catch (const cv::Exception& e) {
    throw ImageError(origin + ": " + format_name(out.format) + " decoder failed: " + e.what());
  }
  if (m.empty()) throw ImageError(origin + ": " + format_name(out.format) + " data could not be decoded (corrupt file?)");
  if (out.original_size.width == 0) out.original_size = m.size();
  out.pixels = to_channels(to_8bit(m), o.color);
  return out;
}

DecodedImage decode_image(const std::string& path, const DecodeOptions& o) {
  std::string bytes;
  try {
    bytes = util::read_file(path);
  } catch (const std::exception& e) {
    throw ImageError(e.what());
  }
  return decode_image_bytes(bytes, path, o);
}

}  // namespace fracture::data
