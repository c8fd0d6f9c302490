#include <gtest/gtest.h>

#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>

#include <filesystem>

#include "fracture/data/image_io.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"

using namespace fracture::data;
namespace ft = fracture::testing;

namespace {

struct DicomSpec {
  std::string photometric = "MONOCHROME2";
  std::string window_center, window_width;
  std::string slope = "1", intercept = "0";
};

// A 12-bit horizontal ramp 0..4095 (stored values), 64 wide, 8 high.
void write_ramp(const std::string& path, const DicomSpec& s) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1125.1");
  ds->putAndInsertString(DCM_Modality, "CR");
  ds->putAndInsertString(DCM_PhotometricInterpretation, s.photometric.c_str());
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_Rows, 8);
  ds->putAndInsertUint16(DCM_Columns, 64);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertString(DCM_RescaleSlope, s.slope.c_str());
  ds->putAndInsertString(DCM_RescaleIntercept, s.intercept.c_str());
  if (!s.window_center.empty()) {
    ds->putAndInsertString(DCM_WindowCenter, s.window_center.c_str());
    ds->putAndInsertString(DCM_WindowWidth, s.window_width.c_str());
  }
  std::vector<Uint16> px(8 * 64);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 64; ++x) px[y * 64 + x] = static_cast<Uint16>(x * 65);  // 0..4095
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size()));
  ASSERT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
}

}  // namespace

TEST(Dicom, MinMaxWindowWithoutVoi) {
  ft::TempDir dir;
  write_ramp(dir / "a.dcm", {});
  auto d = decode_image(dir / "a.dcm");
  EXPECT_EQ(d.format, ImageFormat::Dicom);
  ASSERT_EQ(d.pixels.size(), cv::Size(64, 8));
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 0), 0);
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 63), 255);
  for (int x = 1; x < 64; ++x) EXPECT_GE(d.pixels.at<uint8_t>(0, x), d.pixels.at<uint8_t>(0, x - 1));
}

TEST(Dicom, VoiWindowInModalityUnits) {
  ft::TempDir dir;
  // Modality values = stored - 1024; window 0 +- 50 selects stored ~974..1074.
  write_ramp(dir / "w.dcm", {"MONOCHROME2", "0", "100", "1", "-1024"});
  auto d = decode_image(dir / "w.dcm");
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 10), 0);     // stored 650: below the window
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 30), 255);   // stored 1950: above
  const int mid = d.pixels.at<uint8_t>(0, 16);   // stored 1040 -> modality 16: inside
  EXPECT_GT(mid, 100);
  EXPECT_LT(mid, 230);
}

TEST(Dicom, Monochrome1IsInverted) {
  ft::TempDir dir;
  write_ramp(dir / "m1.dcm", {"MONOCHROME1"});
  auto d = decode_image(dir / "m1.dcm");
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 0), 255);  // low stored value is bright in MONOCHROME1
  EXPECT_EQ(d.pixels.at<uint8_t>(0, 63), 0);
}

TEST(Dicom, CorruptFileNamesIt) {
  ft::TempDir dir;
  std::string junk(128, '\0');
  junk += "DICM";
  junk += std::string(40, '\x7f');
  fracture::util::write_file_atomic(dir / "junk.dcm", junk);
  try {
    decode_image(dir / "junk.dcm");
    FAIL();
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find("junk.dcm"), std::string::npos) << e.what();
  }
}

namespace {

// The ramp with its Pixel Data element honestly sized but holding only
// `fraction` of Rows x Columns (issue 38: such a file was scored).
void write_cut_ramp(const std::string& path, double fraction, Uint16 rows = 8, Uint16 columns = 64) {
  write_ramp(path, {});
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(path.c_str()).good());
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertUint16(DCM_Rows, rows);
  ds->putAndInsertUint16(DCM_Columns, columns);
  std::vector<Uint16> px(static_cast<size_t>(8 * 64 * fraction), 1000);
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size()));
  ASSERT_TRUE(ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
}

void expect_refused(const std::string& path, const std::string& words) {
  try {
    decode_image(path);
    FAIL() << path << " was decoded";
  } catch (const ImageError& e) {
    EXPECT_NE(std::string(e.what()).find(std::filesystem::path(path).filename().string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Dicom, PixelDataShorterThanTheImageIsRefused) {
  ft::TempDir dir;
  write_cut_ramp(dir / "cut.dcm", 0.3);
  expect_refused(dir / "cut.dcm", "truncated");
  write_cut_ramp(dir / "claims-more.dcm", 1.0, 10000, 10000);  // a 100-megapixel header over 1 KB of pixels
  expect_refused(dir / "claims-more.dcm", "need 200000000");
  write_cut_ramp(dir / "whole.dcm", 1.0);
  EXPECT_EQ(decode_image(dir / "whole.dcm").pixels.size(), cv::Size(64, 8));
}

// The ramp compressed with `syntax`, then its last pixel fragment cut to 30%
// of its bytes with its length set to match (an honest-looking cut file).
static void write_compressed_and_cut(const std::string& whole, const std::string& cut, E_TransferSyntax syntax,
                              const DcmRepresentationParameter* parameters) {
  write_ramp(whole, {});
  DcmFileFormat ff;
  ASSERT_TRUE(ff.loadFile(whole.c_str()).good());
  DcmDataset* ds = ff.getDataset();
  ASSERT_TRUE(ds->chooseRepresentation(syntax, parameters).good());
  ASSERT_TRUE(ff.saveFile(whole.c_str(), syntax).good());
  DcmElement* element = nullptr;
  ASSERT_TRUE(ds->findAndGetElement(DCM_PixelData, element).good());
  DcmPixelSequence* sequence = nullptr;
  ASSERT_TRUE(dynamic_cast<DcmPixelData*>(element)->getEncapsulatedRepresentation(syntax, parameters, sequence).good());
  DcmPixelItem* last = nullptr;
  ASSERT_TRUE(sequence->getItem(last, sequence->card() - 1).good());
  Uint8* bytes = nullptr;
  ASSERT_TRUE(last->getUint8Array(bytes).good());
  std::vector<Uint8> kept(bytes, bytes + (last->getLength() * 3 / 10) / 2 * 2);
  ASSERT_TRUE(last->putUint8Array(kept.data(), static_cast<unsigned long>(kept.size())).good());
  ASSERT_TRUE(ff.saveFile(cut.c_str(), syntax).good());
}

TEST(Dicom, CompressedPixelDataCutBeforeItsEndIsRefused) {
  ft::TempDir dir;
  DJEncoderRegistration::registerCodecs();
  DcmRLEEncoderRegistration::registerCodecs();
  DJ_RPLossless lossless;
  write_compressed_and_cut(dir / "jpeg.dcm", dir / "jpeg-cut.dcm", EXS_JPEGProcess14SV1, &lossless);
  write_compressed_and_cut(dir / "rle.dcm", dir / "rle-cut.dcm", EXS_RLELossless, nullptr);
  for (const char* whole : {"jpeg.dcm", "rle.dcm"})  // whole: decoded
    EXPECT_EQ(decode_image(dir / whole).pixels.size(), cv::Size(64, 8)) << whole;
  expect_refused(dir / "jpeg-cut.dcm", "truncated");
  expect_refused(dir / "rle-cut.dcm", "rle-cut.dcm");
  DcmRLEEncoderRegistration::cleanup();
  DJEncoderRegistration::cleanup();
}
