// Inputs a user or an attacker may hand the data layer: each is refused with
// a message naming the file and the problem, before any large allocation.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <dcmtk/dcmdata/dctk.h>

#include "fracture/data/boxes.h"
#include "fracture/data/csv.h"
#include "fracture/data/dataset.h"
#include "fracture/data/image_io.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/paths.h"
#include "helpers.h"

using namespace fracture::data;
namespace ft = fracture::testing;
namespace util = fracture::util;

namespace {

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

// A DICOM of `rows` x `columns` whose pixel data holds only `stored` pixels
// (a header may claim far more than the file holds); with or without the
// 128-byte preamble and meta header.
void write_dicom(const std::string& path, Uint16 rows, Uint16 columns, size_t stored, bool preamble) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_ComputedRadiographyImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1125.7");
  ds->putAndInsertString(DCM_Modality, "CR");
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_Rows, rows);
  ds->putAndInsertUint16(DCM_Columns, columns);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> px(stored);
  for (size_t i = 0; i < stored; ++i) px[i] = static_cast<Uint16>((i * 37) % 4096);
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size()));
  const bool ok = preamble ? ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good()
                           : ds->saveFile(path.c_str(), EXS_LittleEndianImplicit).good();
  if (!ok) throw std::runtime_error("cannot write test DICOM " + path);
}

std::string png_bytes(const cv::Mat& img) {
  std::vector<uchar> buf;
  cv::imencode(".png", img, buf);
  return {buf.begin(), buf.end()};
}

void put_be32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>(v >> (24 - 8 * i));
}

}  // namespace

TEST(HostileInputs, DicomWithoutPreambleIsReadAndFoundInFolders) {
  ft::TempDir dir;
  std::filesystem::create_directories(dir / "export");
  write_dicom(dir / "export/IM0001", 16, 24, 16 * 24, false);  // no extension, no preamble
  const std::string bytes = util::read_file(dir / "export/IM0001");
  ASSERT_NE(bytes.compare(128, 4, "DICM"), 0) << "the test file must lack the preamble";
  EXPECT_EQ(sniff_format(bytes), ImageFormat::Dicom);
  const auto img = decode_image(dir / "export/IM0001");
  EXPECT_EQ(img.pixels.size(), cv::Size(24, 16));
  util::write_file_atomic(dir / "export/notes.txt", "not an image");
  ft::write_image(dir / "export/scan.PNG", ft::synthetic_xray(32, 32, 1));
  const auto files = image_files_in(dir / "export");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0], dir / "export/IM0001");
  EXPECT_EQ(files[1], dir / "export/scan.PNG");
}

TEST(HostileInputs, PixelCountIsCheckedFromTheHeaderBeforeDecoding) {
  ft::TempDir dir;
  // A 20 KB DICOM claiming 65535 x 65535 pixels (17 GB to render).
  write_dicom(dir / "huge.dcm", 65535, 65535, 10000, true);
  auto msg = error_of([&] { decode_image(dir / "huge.dcm"); });
  EXPECT_NE(msg.find("huge.dcm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("65535 x 65535"), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;
  // A PNG whose header says 30000 x 30000 (such a file can be under 1 MB).
  std::string png = png_bytes(ft::synthetic_xray(40, 30, 2));
  put_be32(png, 16, 30000);
  put_be32(png, 20, 30000);
  util::write_file_atomic(dir / "huge.png", png);
  msg = error_of([&] { decode_image(dir / "huge.png"); });
  EXPECT_NE(msg.find("huge.png: PNG of 30000 x 30000 pixels"), std::string::npos) << msg;
  // The limit is an option: a small one refuses an ordinary image too.
  DecodeOptions small;
  small.max_pixels = 1000;
  msg = error_of([&] { decode_image_bytes(png_bytes(ft::synthetic_xray(40, 30, 2)), "s.png", small); });
  EXPECT_NE(msg.find("40 x 30"), std::string::npos) << msg;
  // BMP, TIFF and JPEG headers are read too.
  for (const char* ext : {".bmp", ".tif", ".jpg"}) {
    std::vector<uchar> buf;
    cv::imencode(ext, ft::synthetic_xray(40, 30, 3), buf);
    const std::string b(buf.begin(), buf.end());
    EXPECT_EQ(header_size(b, sniff_format(b)), cv::Size(40, 30)) << ext;
  }
}

TEST(HostileInputs, DicomLengthsMustFitTheFile) {
  // Found by fuzz_image: DCMTK allocates what an element declares (3 GB for
  // a 4 KB file) before reading it.
  ft::TempDir dir;
  for (const bool preamble : {false, true}) {
    const std::string path = dir / (preamble ? "with.dcm" : "without.dcm");
    write_dicom(path, 16, 24, 16 * 24, preamble);
    std::string bytes = util::read_file(path);
    const auto at = bytes.find(std::string("\xe0\x7f\x10\x00", 4));  // (7fe0,0010) pixel data
    ASSERT_NE(at, std::string::npos);
    const size_t length_at = at + (preamble ? 8 : 4);  // explicit VR: "OW", 2 reserved bytes, then the length
    for (int i = 0; i < 4; ++i) bytes[length_at + i] = static_cast<char>((0xC0000000u >> (8 * i)) & 0xff);
    const auto msg = error_of([&] { decode_image_bytes(bytes, "lying.dcm"); });
    EXPECT_NE(msg.find("lying.dcm: DICOM element (7fe0,0010) declares 3221225472 bytes"), std::string::npos) << msg;
  }
}

TEST(HostileInputs, DevicesAndPipesAreNotImages) {
  ft::TempDir dir;
  const std::string fifo = dir / "pipe.jpg";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(error_of([&] { decode_image(fifo); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_image("/dev/zero"); }).find("not a regular file"), std::string::npos);
  EXPECT_FALSE(is_image_file("/dev/zero"));
}

TEST(HostileInputs, ManifestLabelsAreValidatedAgainstTheClasses) {
  ft::TempDir dir;
  const std::string head = "path,label\na.png,0\nb.png,1\nc.png,1\n";
  for (const std::string bad : {"x", "-1", "5", "1.5", ""}) {
    util::write_file_atomic(dir / "m.csv", head + "d.png," + bad + "\n");
    const auto msg = error_of([&] { load_manifest(dir / "m.csv"); });
    EXPECT_NE(msg.find(dir / "m.csv"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("line 5"), std::string::npos) << bad << ": " << msg;
  }
  // What `fracture split` writes: numbers named by a class column, which must agree.
  util::write_file_atomic(dir / "s.csv", "path,label,class\na.png,0,normal\nb.png,1,fractured\nc.png,1,normal\n");
  EXPECT_NE(error_of([&] { load_manifest(dir / "s.csv"); }).find("line 4"), std::string::npos);
  util::write_file_atomic(dir / "ok.csv", "path,label,class\na.png,0,normal\nb.png,1,fractured\n");
  const auto d = load_manifest(dir / "ok.csv");
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"normal", "fractured"}));
  // Names as labels still work (ordered negative first).
  util::write_file_atomic(dir / "n.csv", "path,label\na.png,fracture\nb.png,normal\n");
  EXPECT_EQ(load_manifest(dir / "n.csv").class_names, (std::vector<std::string>{"normal", "fracture"}));
}

TEST(HostileInputs, CsvQuotesMustClose) {
  const auto msg = error_of([] { parse_csv("path\n\"a.png\nb.png\nc.png\n", "list.csv"); });
  EXPECT_NE(msg.find("list.csv:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("never closed"), std::string::npos) << msg;
  const auto rows = parse_csv("\xef\xbb\xbfPATH\na.png\n", "bom.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(csv_column(rows[0], "path"), 0);
}

TEST(HostileInputs, YoloClassMustBeAWholeNumber) {
  EXPECT_NE(error_of([] { parse_yolo_boxes("0.5 0.5 0.5 0.1 0.1\n", "b.txt"); }).find("b.txt:1"), std::string::npos);
  EXPECT_EQ(parse_yolo_boxes("0 0.5 0.5 0.1 0.1\n", "ok.txt").size(), 1u);
}

TEST(HostileInputs, InvalidUtf8IsEscapedNotFatal) {
  EXPECT_EQ(util::escape_invalid_utf8("scan_\xff\xfe.png"), "scan_\\xff\\xfe.png");
  EXPECT_EQ(util::escape_invalid_utf8("Röntgen_€.png"), "Röntgen_€.png");
  EXPECT_EQ(util::escape_invalid_utf8("\xc0\xaf"), "\\xc0\\xaf");  // an overlong '/'
  EXPECT_EQ(util::escape_invalid_utf8("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

TEST(HostileInputs, FuzzFindingsStayFixed) {
  // Each input in tests/fuzz/regressions/image once made DCMTK allocate gigabytes.
  const std::filesystem::path dir = std::filesystem::path(FRACTURE_SOURCE_DIR) / "tests/fuzz/regressions/image";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto msg = error_of([&] { decode_image_bytes(util::read_file(e.path().string()), e.path().filename().string()); });
    EXPECT_NE(msg.find(e.path().filename().string() + ": DICOM element"), std::string::npos) << msg;
    ++n;
  }
  EXPECT_GE(n, 3);
}
