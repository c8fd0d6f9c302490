#include <gtest/gtest.h>

#include "fracture/data/image_io.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"

using namespace fracture::data;
namespace ft = fracture::testing;

TEST(ImageIO, DecodesEveryRasterFormatToTheSamePixels) {
  ft::TempDir dir;
  const cv::Mat img = ft::synthetic_xray(64, 48, 1);
  for (const std::string ext : {"png", "bmp", "tif"}) {
    ft::write_image(dir / ("a." + ext), img);
    auto d = decode_image(dir / ("a." + ext));
    ASSERT_EQ(d.pixels.type(), CV_8UC1) << ext;
    EXPECT_EQ(cv::norm(d.pixels, img, cv::NORM_INF), 0) << ext;
  }
  ft::write_image(dir / "a.jpg", img, {cv::IMWRITE_JPEG_QUALITY, 98});
  auto j = decode_image(dir / "a.jpg");
  EXPECT_EQ(j.format, ImageFormat::Jpeg);
  EXPECT_LT(cv::norm(j.pixels, img, cv::NORM_L1) / img.total(), 3.0);
  EXPECT_FALSE(j.truncated);
}

TEST(ImageIO, ColourModeGivesRgbOrder) {
  ft::TempDir dir;
  cv::Mat bgr(8, 8, CV_8UC3, cv::Scalar(255, 0, 0));  // pure blue in OpenCV's BGR
  ft::write_image(dir / "blue.png", bgr);
  auto d = decode_image(dir / "blue.png", {true, 0});
  ASSERT_EQ(d.pixels.type(), CV_8UC3);
  EXPECT_EQ(d.pixels.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 255));
}

TEST(ImageIO, SixteenBitImagesAreWindowedMinMax) {
  ft::TempDir dir;
  cv::Mat img16(10, 10, CV_16UC1);
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 10; ++x) img16.at<uint16_t>(y, x) = static_cast<uint16_t>(1000 + 30 * (y * 10 + x));
  for (const std::string ext : {"png", "tif"}) {
    ft::write_image(dir / ("s." + ext), img16);
    auto d = decode_image(dir / ("s." + ext));
    ASSERT_EQ(d.pixels.type(), CV_8UC1);
    EXPECT_EQ(d.pixels.at<uint8_t>(0, 0), 0) << ext;
    EXPECT_EQ(d.pixels.at<uint8_t>(9, 9), 255) << ext;
    EXPECT_NEAR(d.pixels.at<uint8_t>(5, 0), 129, 1) << ext;
  }
}

TEST(ImageIO, LargeJpegDecodesAtReducedScale) {
  ft::TempDir dir;
  ft::write_image(dir / "big.jpg", ft::synthetic_xray(2304, 2880, 3));
  auto full = decode_image(dir / "big.jpg");
  EXPECT_EQ(full.pixels.cols, 2304);
  auto small = decode_image(dir / "big.jpg", {false, 448});
  EXPECT_EQ(small.reduction, 4);  // 2304 / 4 = 576 >= 448 > 2304 / 8
  EXPECT_EQ(small.pixels.cols, 576);
  EXPECT_EQ(small.original_size, cv::Size(2304, 2880));
  EXPECT_EQ(jpeg_size(fracture::util::read_file(dir / "big.jpg")), cv::Size(2304, 2880));
}

TEST(ImageIO, TruncatedJpegDecodesWithFlag) {
  ft::TempDir dir;
  ft::write_image(dir / "full.jpg", ft::synthetic_xray(256, 256, 4));
  const std::string bytes = fracture::util::read_file(dir / "full.jpg");
  fracture::util::write_file_atomic(dir / "cut.jpg", bytes.substr(0, bytes.size() * 2 / 3));
  auto d = decode_image(dir / "cut.jpg");
  EXPECT_TRUE(d.truncated);
  EXPECT_EQ(d.pixels.size(), cv::Size(256, 256));
}

TEST(ImageIO, UnreadableFilesThrowNamingTheFile) {
  ft::TempDir dir;
  fracture::util::write_file_atomic(dir / "notes.jpg", "this is text, not an image");
  fracture::util::write_file_atomic(dir / "empty.png", "");
  fracture::util::write_file_atomic(dir / "broken.png", std::string("\x89PNG\r\n\x1a\n garbage", 17));
  for (const std::string f : {"notes.jpg", "empty.png", "broken.png", "missing.jpg"}) {
    try {
      decode_image(dir / f);
      FAIL() << f;
    } catch (const ImageError& e) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
    }
  }
}

TEST(ImageIO, PaddingAfterTheEndMarkerIsNotTruncation) {
  ft::TempDir dir;
  ft::write_image(dir / "full.jpg", ft::synthetic_xray(64, 64, 4));
  const std::string bytes = fracture::util::read_file(dir / "full.jpg");
  fracture::util::write_file_atomic(dir / "padded.jpg", bytes + std::string(300, '\0'));
  EXPECT_FALSE(decode_image(dir / "padded.jpg").truncated);
}
