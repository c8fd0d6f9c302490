#include <gtest/gtest.h>

#include "fracture/data/transforms.h"

#include <opencv2/imgproc.hpp>
#include "helpers.h"

using namespace fracture::data;
namespace ft = fracture::testing;

TEST(Transforms, StretchAndLetterbox) {
  cv::Mat img(100, 200, CV_8UC1, cv::Scalar(200));
  PreprocessOptions o;
  o.size = 64;
  EXPECT_EQ(preprocess(img, o).size(), cv::Size(64, 64));
  EXPECT_EQ(preprocess(img, o).at<uint8_t>(0, 0), 200);
  o.resize = ResizeMode::Letterbox;
  const cv::Mat lb = preprocess(img, o);
  ASSERT_EQ(lb.size(), cv::Size(64, 64));
  EXPECT_EQ(lb.at<uint8_t>(0, 32), 0);     // bar above
  EXPECT_EQ(lb.at<uint8_t>(63, 32), 0);    // bar below
  EXPECT_EQ(lb.at<uint8_t>(32, 32), 200);  // image in the middle (rows 16..47)
  EXPECT_EQ(lb.at<uint8_t>(16, 0), 200);
}

TEST(Transforms, ClaheRaisesLocalContrast) {
  cv::Mat img(128, 128, CV_8UC1);
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) img.at<uint8_t>(y, x) = static_cast<uint8_t>(100 + (x % 32) / 2);  // faint ramps
  PreprocessOptions o;
  o.size = 128;
  o.clahe = true;
  cv::Scalar m0, s0, m1, s1;
  cv::meanStdDev(img, m0, s0);
  cv::meanStdDev(preprocess(img, o), m1, s1);
  EXPECT_GT(s1[0], s0[0] * 1.5);
}

// Per-image standardisation: two exposures of one picture (a linear change of
// grey levels, as between scanners) come out the same, at ImageNet's grey
// mean and spread; letterbox bars stay black and do not count.
TEST(Transforms, StandardiseUndoesExposureAndContrast) {
  cv::Mat img(96, 96, CV_8UC1);
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 96; ++x) img.at<uint8_t>(y, x) = static_cast<uint8_t>(60 + (x + 2 * y) % 50);
  cv::Mat brighter;
  img.convertTo(brighter, -1, 1.6, 30);  // 90..168 -> more contrast, lifted
  PreprocessOptions o;
  o.size = 96;
  o.standardise = true;
  const cv::Mat a = preprocess(img, o), b = preprocess(brighter, o);
  cv::Scalar m, sd;
  cv::meanStdDev(a, m, sd);
  EXPECT_NEAR(m[0], 0.449 * 255, 1.0);
  EXPECT_NEAR(sd[0], 0.226 * 255, 1.0);
  EXPECT_LE(cv::norm(a, b, cv::NORM_INF), 2.0);  // only rounding apart (of the exposure, then of the result)
  cv::meanStdDev(preprocess(img, PreprocessOptions{96}), m, sd);
  EXPECT_GT(std::abs(m[0] - 0.449 * 255), 20.0) << "off by default";

  const cv::Mat flat(50, 50, CV_8UC1, cv::Scalar(7));
  EXPECT_EQ(cv::countNonZero(preprocess(flat, o) != static_cast<int>(std::lround(0.449 * 255))), 0) << "only shifted";

  cv::Mat wide(48, 96, CV_8UC1);
  cv::resize(img, wide, wide.size());
  o.resize = ResizeMode::Letterbox;
  const cv::Mat boxed = preprocess(wide, o);
  EXPECT_EQ(boxed.at<uint8_t>(0, 48), 0);   // bar above
  EXPECT_EQ(boxed.at<uint8_t>(95, 48), 0);  // bar below
  cv::meanStdDev(boxed(cv::Rect(0, 24, 96, 48)), m, sd);
  EXPECT_NEAR(m[0], 0.449 * 255, 1.0);  // the content alone is standardised
}

TEST(Transforms, AugmentIsSeededAndOffByDefault) {
  const cv::Mat img = ft::synthetic_xray(96, 96, 6);
  AugmentOptions off;
  EXPECT_EQ(cv::norm(augment(img, off, 1), img, cv::NORM_INF), 0);
  AugmentOptions on;
  on.enabled = true;
  const cv::Mat a = augment(img, on, 42), b = augment(img, on, 42), c = augment(img, on, 43);
  EXPECT_EQ(a.size(), img.size());
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0);
  EXPECT_GT(cv::norm(a, c, cv::NORM_L1), 0);
}

TEST(Transforms, FlipOnlyMirrors) {
  cv::Mat img(32, 32, CV_8UC1, cv::Scalar(0));
  img(cv::Rect(0, 0, 8, 32)).setTo(255);  // bright band on the left
  AugmentOptions o;
  o.enabled = true;
  o.min_crop_area = 1.0;
  o.max_aspect_change = 0.0;
  o.max_rotation_deg = 0.0;
  o.brightness = o.contrast = 0.0;
  o.flip_probability = 1.0;
  const cv::Mat f = augment(img, o, 1);
  cv::Mat expected;
  cv::flip(img, expected, 1);
  EXPECT_LE(cv::norm(f, expected, cv::NORM_L1) / img.total(), 1.0);
}

namespace {

// Centre of mass of the pixels brighter than half the image's maximum.
cv::Point2d bright_centroid(const cv::Mat& img) {
  double lo, hi;
  cv::minMaxLoc(img, &lo, &hi);
  cv::Mat mask = img > (lo + hi) / 2;
  const cv::Moments m = cv::moments(mask, true);
  return {m.m10 / m.m00, m.m01 / m.m00};
}

cv::Mat off_centre_square() {
  cv::Mat img(96, 96, CV_8UC1, cv::Scalar(60));
  img(cv::Rect(20, 50, 24, 24)).setTo(200);
  return img;
}

}  // namespace

TEST(Transforms, IntensityAugmentChangesPixelsButNotWhereThingsAre) {
  const cv::Mat img = off_centre_square();
  AugmentOptions o = with_scanner_intensity({});
  o.enabled = true;
  o.geometric = false;
  double mean_lo = 255, mean_hi = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const cv::Mat a = augment(img, o, seed);
    ASSERT_EQ(a.size(), img.size());
    EXPECT_EQ(cv::norm(a, augment(img, o, seed), cv::NORM_INF), 0) << "seeded";
    const cv::Point2d c = bright_centroid(a);
    EXPECT_NEAR(c.x, 31.5, 0.5) << "seed " << seed;
    EXPECT_NEAR(c.y, 61.5, 0.5) << "seed " << seed;
    const double m = cv::mean(a)[0];
    mean_lo = std::min(mean_lo, m), mean_hi = std::max(mean_hi, m);
  }
  // Gamma and window move the grey levels a lot more than the default
  // brightness and contrast (10%) alone would.
  EXPECT_GT(mean_hi - mean_lo, 20);
}

TEST(Transforms, IntensityAugmentKeepsTheGeometricDraws) {
  // Turning the scanner changes on must not move a geometric augmentation
  // that a seed gave before: the same crop, turn and mirror.
  const cv::Mat img = off_centre_square();
  AugmentOptions geometric;
  geometric.enabled = true;
  AugmentOptions both = with_scanner_intensity(geometric);
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    const cv::Point2d a = bright_centroid(augment(img, geometric, seed)), b = bright_centroid(augment(img, both, seed));
    EXPECT_NEAR(a.x, b.x, 1.0) << "seed " << seed;
    EXPECT_NEAR(a.y, b.y, 1.0) << "seed " << seed;
  }
}

TEST(Transforms, NoiseAndBlurShowInTheImage) {
  cv::Mat flat(64, 64, CV_8UC1, cv::Scalar(128));
  AugmentOptions noise;
  noise.enabled = true;
  noise.geometric = false;
  noise.brightness = noise.contrast = 0;
  noise.noise = 0.05;
  int noisy = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    cv::Scalar m, sd;
    cv::meanStdDev(augment(flat, noise, seed), m, sd);
    noisy += sd[0] > 1.0;
  }
  EXPECT_GT(noisy, 3);  // about half the images
  EXPECT_LT(noisy, 17);
  cv::Mat edge(64, 64, CV_8UC1, cv::Scalar(0));
  edge(cv::Rect(32, 0, 32, 64)).setTo(255);
  AugmentOptions blur = noise;
  blur.noise = 0;
  blur.blur = 1.5;
  int blurred = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) blurred += augment(edge, blur, seed).at<uint8_t>(10, 32) < 250;
  EXPECT_GT(blurred, 3);
  EXPECT_LT(blurred, 17);
}

TEST(Transforms, ToTensorNormalisesAndRepeatsGrey) {
  cv::Mat grey(2, 3, CV_8UC1, cv::Scalar(255));
  auto t = to_tensor(grey, {0.5f, 0.5f, 0.5f}, {0.5f, 0.25f, 0.5f});
  ASSERT_EQ(t.sizes(), (std::vector<int64_t>{3, 2, 3}));
  EXPECT_NEAR(t[0][0][0].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(t[1][1][2].item<float>(), 2.0, 1e-6);
  cv::Mat rgb(1, 1, CV_8UC3, cv::Scalar(0, 51, 255));  // R=0, G=51, B=255 in RGB order
  auto u = to_tensor(rgb, {0, 0, 0}, {1, 1, 1});
  EXPECT_NEAR(u[0][0][0].item<float>(), 0.0, 1e-6);
  EXPECT_NEAR(u[1][0][0].item<float>(), 0.2, 1e-6);
  EXPECT_NEAR(u[2][0][0].item<float>(), 1.0, 1e-6);
}
