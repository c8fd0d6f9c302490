// Writes the fuzzers' seed corpora, all generated here (no data set needed):
//   make_fuzz_seeds OUT_DIR  ->  OUT_DIR/<target>/seed-N
// Small valid inputs of every kind each parser reads, plus a few near-misses.
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "fracture/models/weights_io.h"
#include "helpers.h"

namespace fs = std::filesystem;
namespace ft = fracture::testing;

namespace {

void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string encode(const std::string& ext, const cv::Mat& img) {
  std::vector<uchar> buf;
  cv::imencode(ext, img, buf);
  return {buf.begin(), buf.end()};
}

// A small uncompressed DICOM, with or without its preamble.
std::string dicom(const cv::Mat& grey16, bool preamble) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_ComputedRadiographyImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.3.4");
  ds->putAndInsertString(DCM_Modality, "CR");
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(grey16.rows));
  ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(grey16.cols));
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 12);
  ds->putAndInsertUint16(DCM_HighBit, 11);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertString(DCM_WindowCenter, "2048");
  ds->putAndInsertString(DCM_WindowWidth, "4096");
  ds->putAndInsertUint16Array(DCM_PixelData, reinterpret_cast<const Uint16*>(grey16.data), grey16.total());
  std::vector<char> buf(1 << 20);
  DcmOutputBufferStream out(buf.data(), buf.size());
  if (preamble) {
    file.transferInit();
    file.write(out, EXS_LittleEndianExplicit, EET_ExplicitLength, nullptr);
    file.transferEnd();
  } else {
    ds->transferInit();
    ds->write(out, EXS_LittleEndianImplicit, EET_ExplicitLength, nullptr);
    ds->transferEnd();
  }
  void* data = nullptr;
  offile_off_t len = 0;
  out.flushBuffer(data, len);
  return std::string(static_cast<const char*>(data), static_cast<size_t>(len));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_fuzz_seeds OUT_DIR\n";
    return 2;
  }
  const fs::path out(argv[1]);
  // Images: every format, grey and colour, 8 and 16 bit, a truncated JPEG.
  const cv::Mat grey = ft::synthetic_xray(48, 40, 1, true);
  cv::Mat colour, grey16;
  cv::cvtColor(grey, colour, cv::COLOR_GRAY2BGR);
  grey.convertTo(grey16, CV_16U, 16);
  const fs::path img = out / "image";
  put(img, "grey.jpg", encode(".jpg", grey));
  put(img, "colour.jpg", encode(".jpg", colour));
  const std::string big_jpeg = encode(".jpg", ft::synthetic_xray(600, 520, 2));
  put(img, "reducible.jpg", big_jpeg);
  put(img, "truncated.jpg", big_jpeg.substr(0, big_jpeg.size() / 2));
  put(img, "grey.png", encode(".png", grey));
  put(img, "grey16.png", encode(".png", grey16));
  put(img, "colour.bmp", encode(".bmp", colour));
  put(img, "grey16.tif", encode(".tif", grey16));
  put(img, "with-preamble.dcm", dicom(grey16, true));
  put(img, "no-preamble.dcm", dicom(grey16, false));

  // safetensors: tensors of several dtypes and shapes, with metadata.
  const fs::path st = out / "safetensors";
  put(st, "model.safetensors",
      fracture::models::serialize_safetensors(
          {{"w", torch::randn({3, 2})}, {"b", torch::zeros({2}, torch::kFloat16)}, {"n", torch::tensor(7, torch::kLong)}},
          {{"fracture", R"({"architecture":"efficientnet_lite0","threshold":0.5})"}}));
  put(st, "empty.safetensors", fracture::models::serialize_safetensors({}));

  // CSV manifests: what `fracture split` writes, names as labels, quotes, a BOM.
  const fs::path csv = out / "manifest";
  put(csv, "split.csv",
      "path,label,class,split,group,region,hardware\n"
      "images/a.jpg,1,fractured,train,a,hand,0\nimages/b.jpg,0,non_fractured,val,b,leg,1\n"
      "\"images/c,d.jpg\",0,non_fractured,test,\"c \"\"d\"\"\",hip,\n");
  put(csv, "names.csv", "\xef\xbb\xbfPath,Label\nx.png,normal\ny.png,fracture\nz.png,fracture\n");

  // YOLO label files.
  const fs::path yolo = out / "yolo";
  put(yolo, "two-boxes.txt", "0 0.5 0.5 0.2 0.1\n3 0.25 0.75 0.1 0.3\n");
  put(yolo, "empty.txt", "");

  // Pickles of state dicts (protocol 2, as torch.save writes): made by
  // scripts/fuzz.sh with Python's torch, which also writes the zip seeds.
  std::cout << "seeds in " << out.string() << "\n";
  return 0;
}
