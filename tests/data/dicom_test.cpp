#include <gtest/gtest.h>

#include <dcmtk/dcmdata/dctk.h>

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
