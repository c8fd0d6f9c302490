#include "fracture/data/dicom.h"

#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <opencv2/imgproc.hpp>

#include <cstring>
#include <memory>
#include <mutex>

#include "fracture/data/image_io.h"

namespace fracture::data {

cv::Mat decode_dicom(const std::string& bytes, const std::string& origin, int64_t max_pixels) {
  static std::once_flag codecs;
  std::call_once(codecs, [] {
    // Compressed transfer syntaxes (JPEG, JPEG-LS, RLE) are common in PACS exports.
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
  DcmInputBufferStream stream;
  stream.setBuffer(bytes.data(), static_cast<offile_off_t>(bytes.size()));
  stream.setEos();
  DcmFileFormat file;
  file.transferInit();
  OFCondition cond = file.read(stream);
  file.transferEnd();
  if (cond.bad()) throw ImageError(origin + ": DICOM parse error: " + cond.text());
  DcmDataset* ds = file.getDataset();
  Uint16 rows = 0, columns = 0;
  ds->findAndGetUint16(DCM_Rows, rows);
  ds->findAndGetUint16(DCM_Columns, columns);
  if (rows == 0 || columns == 0) throw ImageError(origin + ": DICOM without Rows / Columns (no image in it?)");
  if (static_cast<int64_t>(rows) * columns > max_pixels)
    throw ImageError(origin + ": DICOM of " + std::to_string(columns) + " x " + std::to_string(rows) +
                     " pixels, more than the limit of " + std::to_string(max_pixels) + " (not rendered)");
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  auto image = std::make_unique<DicomImage>(&file, xfer, CIF_MayDetachPixelData, 0, 1);
  if (image->getStatus() != EIS_Normal)
    throw ImageError(origin + ": DICOM image cannot be rendered: " + DicomImage::getString(image->getStatus()));
  if (image->isMonochrome()) {
    if (image->getWindowCount() > 0) image->setWindow(0);
    else image->setMinMaxWindow();
  }
  const int w = static_cast<int>(image->getWidth()), h = static_cast<int>(image->getHeight());
  const void* data = image->getOutputData(8, 0, 0);
  if (!data) throw ImageError(origin + ": DICOM pixel data could not be rendered");
  if (image->isMonochrome()) return cv::Mat(h, w, CV_8UC1, const_cast<void*>(data)).clone();
  cv::Mat rgb(h, w, CV_8UC3, const_cast<void*>(data)), bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

}  // namespace fracture::data
