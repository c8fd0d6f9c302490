#include <gtest/gtest.h>

#include "fracture/models/weights_io.h"
#include "fracture/util/atomic_file.h"
#include "helpers.h"

using namespace fracture::models;

TEST(Safetensors, RoundTripsEveryDtype) {
  TensorMap t;
  t["f32"] = torch::randn({3, 4});
  t["f64"] = torch::randn({2}, torch::kFloat64);
  t["f16"] = torch::randn({5}).to(torch::kFloat16);
  t["bf16"] = torch::randn({5}).to(torch::kBFloat16);
  t["i64"] = torch::arange(7, torch::kInt64);
  t["u8"] = torch::arange(9, torch::kUInt8).view({3, 3});
  t["scalar"] = torch::tensor(3.5f).reshape({});
  t["empty"] = torch::empty({0, 4});
  t["strided"] = torch::randn({4, 6}).t();  // non-contiguous input
  fracture::testing::TempDir dir;
  save_safetensors(dir / "w.safetensors", t, {{"source", "test"}});
  const auto back = load_safetensors(dir / "w.safetensors");
  EXPECT_EQ(back.metadata.at("source"), "test");
  ASSERT_EQ(back.tensors.size(), t.size());
  for (const auto& [k, v] : t) {
    ASSERT_EQ(back.tensors.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(back.tensors.at(k), v)) << k;
  }
}

TEST(Safetensors, HeaderIsPaddedToEightBytes) {
  const std::string bytes = serialize_safetensors({{"x", torch::ones({1})}});
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 4);
}

TEST(Safetensors, CorruptFilesGiveErrorsNamingTheFile) {
  const std::string good = serialize_safetensors({{"x", torch::ones({16})}});
  auto expect_error = [](const std::string& bytes, const std::string& what) {
    try {
      parse_safetensors(bytes, "broken.safetensors");
      FAIL() << "accepted: " << what;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("broken.safetensors"), std::string::npos) << e.what();
    }
  };
  expect_error(good.substr(0, good.size() - 4), "truncated data");
  expect_error(good.substr(0, 5), "truncated length");
  std::string bad_json = good;
  bad_json[9] = '!';
  expect_error(bad_json, "bad json");
  std::string huge = good;
  huge[6] = 1;
  expect_error(huge, "header length beyond file");
}

TEST(TensorFile, LegacyPickleIsRefusedWithConversionCommand) {
  fracture::testing::TempDir dir;
  // The first bytes of a legacy (pre-1.6) .pth file.
  fracture::util::write_file_atomic(dir / "old.pth", std::string("\x80\x02\x8a\x0a" "l\xfc\x9c" "F\xf9 j\xa8P\x19."));
  try {
    load_tensor_file(dir / "old.pth");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("convert_weights.py"), std::string::npos) << e.what();
  }
}
