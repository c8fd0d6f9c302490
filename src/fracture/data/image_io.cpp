#include "fracture/data/image_io.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "fracture/data/dicom.h"
#include "fracture/util/atomic_file.h"

namespace fs = std::filesystem;

namespace fracture::data {
namespace {

bool starts_with(const std::string& s, const char* magic, size_t n) {
  return s.size() >= n && s.compare(0, n, magic, n) == 0;
}

// A DICOM data set written without the 128-byte preamble and "DICM" (older
// PACS exports, DICOMDIR members): it starts with a group 0002 (meta) or
// 0008 (identifying) element, in explicit VR (two capital letters follow the
// tag) or implicit VR (a 4-byte length that fits the file).
bool dicom_without_preamble(const std::string& b) {
  if (b.size() < 8) return false;
  auto u8 = [&](size_t i) { return static_cast<unsigned char>(b[i]); };
  const unsigned group = u8(0) | u8(1) << 8;
  if (group != 0x0002 && group != 0x0008) return false;
  if (std::isupper(u8(4)) && std::isupper(u8(5))) return true;
  const uint32_t length = u8(4) | u8(5) << 8 | u8(6) << 16 | static_cast<uint32_t>(u8(7)) << 24;
  return (u8(2) | u8(3) << 8) < 0x0100 && length < 1024;
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
  if (b.size() >= 132 && b.compare(128, 4, "DICM") == 0) return ImageFormat::Dicom;
  if (dicom_without_preamble(b)) return ImageFormat::Dicom;
  return ImageFormat::Unknown;
}

bool is_image_file(const std::string& path) {
  static const std::set<std::string> ext = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"};
  std::string e = fs::path(path).extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext.count(e)) return true;
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  std::string head(132, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return sniff_format(head) != ImageFormat::Unknown;
}

std::string truncated_message(const std::string& origin) {
  return origin + ": JPEG without its end marker (truncated file or upload?): not scored, since its missing part "
                  "would be filled in";
}

std::vector<std::string> image_files_in(const std::string& dir) {
  std::vector<std::string> out;
  // Not only regular files: a pipe or device named like an image is listed,
  // and so is an entry whose kind cannot be told (a symbolic link loop), so
  // that reading it reports it by name: one bad entry neither stops the
  // listing nor is skipped in silence.
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) throw std::runtime_error(dir + ": cannot list: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw std::runtime_error(dir + ": cannot list: " + ec.message());
    std::error_code kind_ec;
    const bool directory = it->is_directory(kind_ec);
    const bool untellable = kind_ec && kind_ec != std::errc::no_such_file_or_directory;  // a link to nowhere: by its name
    if (untellable || (!directory && is_image_file(it->path().string()))) out.push_back(it->path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

cv::Size header_size(const std::string& b, ImageFormat format) {
  auto u8 = [&](size_t i) -> uint32_t { return i < b.size() ? static_cast<unsigned char>(b[i]) : 0u; };
  auto be32 = [&](size_t i) { return u8(i) << 24 | u8(i + 1) << 16 | u8(i + 2) << 8 | u8(i + 3); };
  auto le16 = [&](size_t i) { return u8(i) | u8(i + 1) << 8; };
  auto le32 = [&](size_t i) { return le16(i) | le16(i + 2) << 16; };
  auto clamp = [](int64_t v) { return static_cast<int>(std::min<int64_t>(std::llabs(v), 1 << 30)); };
  switch (format) {
    case ImageFormat::Jpeg: return jpeg_size(b);
    case ImageFormat::Png:  // the IHDR chunk comes first: width and height at bytes 16 and 20
      if (b.size() < 24 || b.compare(12, 4, "IHDR") != 0) return {0, 0};
      return {clamp(be32(16)), clamp(be32(20))};
    case ImageFormat::Bmp: {
      if (b.size() < 26) return {0, 0};
      if (le32(14) == 12) return {static_cast<int>(le16(18)), static_cast<int>(le16(20))};  // OS/2 header
      return {clamp(static_cast<int32_t>(le32(18))), clamp(static_cast<int32_t>(le32(22)))};
    }
    case ImageFormat::Tiff: {  // the first IFD's ImageWidth (256) and ImageLength (257)
      const bool big = b.size() > 1 && b[0] == 'M';
      auto r16 = [&](size_t i) { return big ? (u8(i) << 8 | u8(i + 1)) : le16(i); };
      auto r32 = [&](size_t i) { return big ? be32(i) : le32(i); };
      const size_t ifd = r32(4);
      if (ifd + 2 > b.size()) return {0, 0};
      int64_t w = 0, h = 0;
      const size_t n = r16(ifd);
      for (size_t k = 0; k < n && ifd + 2 + 12 * (k + 1) <= b.size(); ++k) {
        const size_t e = ifd + 2 + 12 * k;
        const uint32_t tag = r16(e), type = r16(e + 2);
        const int64_t v = type == 3 ? r16(e + 8) : type == 4 ? r32(e + 8) : 0;
        if (tag == 256) w = v;
        if (tag == 257) h = v;
      }
      return {clamp(w), clamp(h)};
    }
    default: return {0, 0};
  }
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
  if (bytes.empty()) throw ImageError(origin + ": empty file", ImageError::Kind::Empty);
  if (out.format == ImageFormat::Unknown)
    throw ImageError(origin + ": not a JPEG, PNG, BMP, TIFF or DICOM file", ImageError::Kind::NotAnImage);
  if (bytes.size() > o.max_file_bytes)
    throw ImageError(origin + ": " + std::to_string(bytes.size()) + " bytes, more than the limit of " +
                     std::to_string(o.max_file_bytes), ImageError::Kind::TooLarge);
  if (out.format == ImageFormat::Dicom) {
    cv::Mat m = decode_dicom(bytes, origin, o.max_pixels);
    out.original_size = m.size();
    out.pixels = to_channels(m, o.color);
    return out;
  }
  const cv::Size declared = header_size(bytes, out.format);
  if (static_cast<int64_t>(declared.width) * declared.height > o.max_pixels)
    throw ImageError(origin + ": " + format_name(out.format) + " of " + std::to_string(declared.width) + " x " +
                     std::to_string(declared.height) + " pixels, more than the limit of " +
                     std::to_string(o.max_pixels) + " (not decoded)", ImageError::Kind::TooLarge);
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
    bytes = util::read_file(path, o.max_file_bytes);
  } catch (const std::exception& e) {
    throw ImageError(e.what(), ImageError::Kind::Unreadable);
  }
  return decode_image_bytes(bytes, path, o);
}

}  // namespace fracture::data
