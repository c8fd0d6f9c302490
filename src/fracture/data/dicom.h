#pragma once
#include <opencv2/core.hpp>

#include <cstdint>
#include <string>

namespace fracture::data {

// Renders the first frame of a DICOM file to 8 bits, as a viewer would:
// modality LUT (rescale slope/intercept), then the first VOI window
// (centre/width) or, failing that, the min-max window; MONOCHROME1 (where
// high values are dark) comes out inverted so bone is always bright.
// Grey images give CV_8UC1, colour ones CV_8UC3 (BGR, as OpenCV decodes).
// Images of more than `max_pixels` (rows x columns, as the header says) are
// refused before any pixel is rendered. Throws ImageError naming `origin`.
cv::Mat decode_dicom(const std::string& bytes, const std::string& origin, int64_t max_pixels);

}  // namespace fracture::data
