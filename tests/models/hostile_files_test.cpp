// Damaged and crafted weight and model files: each is refused with a message
// naming the file and the problem, never read past its end (the sanitised
// build, scripts/sanitize.sh, runs these too).
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "fracture/models/layers.h"
#include "fracture/models/registry.h"
#include "fracture/models/torch_zip.h"
#include "fracture/models/weights_io.h"
#include "fracture/train/checkpoint.h"
#include "fracture/train/inference.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "helpers.h"
#include "train/fixtures.h"

namespace ft = fracture::testing;
using namespace fracture;

namespace {

// Expects `f` to throw std::runtime_error whose message holds every string in `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nlacks: " << p;
  }
}

std::string le32(uint32_t v) { return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; }
std::string X(const std::string& s) { return "X" + le32(static_cast<uint32_t>(s.size())) + s; }

// The pickle torch.save writes for {"a": tensor of `numel` float32 stored in
// record data/0}, viewed as `size` elements from `offset` with stride 1.
std::string state_dict_pickle(int numel, int size, int offset = 0) {
  std::string p = "\x80\x02}(" + X("a") + "ctorch._utils\n_rebuild_tensor_v2\n((" + X("storage") +
                  "ctorch\nFloatStorage\n" + X("0") + X("cpu") + "K" + char(numel) + "tQK" + char(offset) + "K" +
                  char(size) + "\x85K\x01\x85\x89" + "ccollections\nOrderedDict\n)RtRu.";
  return p;
}

std::string safetensors_with(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return out + h + data;
}

}  // namespace

TEST(HostileFiles, PickleStorageOfTheWrongSizeIsRefused) {
  auto records = [](size_t bytes) {
    return [bytes](const std::string&) { return std::string(bytes, '\x01'); };
  };
  // The right size reads.
  auto ok = models::parse_state_dict_pickle(state_dict_pickle(4, 4), records(16), "ok.pth");
  ASSERT_EQ(ok.count("a"), 1u);
  EXPECT_EQ(ok.at("a").numel(), 4);
  // A 3-byte record (was: a segfault) and a 19-byte one for 16 bytes (was: a heap overflow).
  expect_error([&] { models::parse_state_dict_pickle(state_dict_pickle(4, 4), records(3), "short.pth"); },
               {"short.pth", "data/0", "3 bytes"});
  expect_error([&] { models::parse_state_dict_pickle(state_dict_pickle(4, 4), records(19), "long.pth"); },
               {"long.pth", "19 bytes"});
  // A view reaching past its storage.
  expect_error([&] { models::parse_state_dict_pickle(state_dict_pickle(4, 5), records(16), "view.pth"); },
               {"view.pth", "past the end of its storage"});
  expect_error([&] { models::parse_state_dict_pickle(state_dict_pickle(4, 2, 3), records(16), "offset.pth"); },
               {"offset.pth", "past the end"});
  // Found by fuzz_pickle (an uncaught std::length_error): a MARK left above
  // the stack by the values popped after it.
  const std::string fuzz_crash("\x80\x02\x63\x63ollections\nOrderedDict\nq\x00)Rq\x08(build_tensor_v2\nq\x03(", 53);
  expect_error([&] { models::parse_state_dict_pickle(fuzz_crash, records(16), "crash.pth"); }, {"crash.pth", "malformed"});
  // Found by fuzz_pickle (a leak): a list appended to itself is a shared_ptr
  // cycle; the sanitised build's LeakSanitizer checks it is freed.
  expect_error([&] { models::parse_state_dict_pickle(std::string("\x80\x02]q\x00h\x00\x61.", 9), records(16), "cycle.pth"); },
               {"cycle.pth", "no state dict"});
  // Truncated pickles, anywhere.
  const std::string whole = state_dict_pickle(4, 4);
  for (size_t cut = 0; cut < whole.size(); cut += 3)
    expect_error([&] { models::parse_state_dict_pickle(whole.substr(0, cut), records(16), "cut.pth"); }, {"cut.pth"});
}

TEST(HostileFiles, ZipArchiveWithAShortStorageIsRefusedByName) {
  ft::TempDir dir;
  const std::string path = dir / "short.pth";
  {
    caffe2::serialize::PyTorchStreamWriter writer(path);
    const std::string pkl = state_dict_pickle(4, 4);
    writer.writeRecord("data.pkl", pkl.data(), pkl.size());
    writer.writeRecord("data/0", "abc", 3);
    writer.writeEndOfFile();
  }
  expect_error([&] { models::load_tensor_file(path); }, {path, "3 bytes"});
  util::write_file_atomic(dir / "junk.pth", "PK\x03\x04 this is no zip");
  expect_error([&] { models::load_tensor_file(dir / "junk.pth"); }, {"junk.pth", "not a readable PyTorch zip archive"});
}

TEST(HostileFiles, SafetensorsHeadersAreChecked) {
  ft::TempDir dir;
  auto parse = [](const std::string& bytes) { models::parse_safetensors(bytes, "x.safetensors"); };
  const std::string four_floats(16, '\0');
  // Valid.
  EXPECT_NO_THROW(parse(safetensors_with({{"t", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}, four_floats)));
  // A shape whose element count overflows 64 bits, then wraps to the byte size.
  expect_error([&] { parse(safetensors_with({{"t", {{"dtype", "F32"}, {"shape", {uint64_t{1} << 40, uint64_t{1} << 40}}, {"data_offsets", {0, 16}}}}}, four_floats)); },
               {"x.safetensors", "overflows"});
  // JSON of the wrong types: named, not a bare library message.
  expect_error([&] { parse(safetensors_with({{"t", {{"dtype", 5}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}, four_floats)); },
               {"x.safetensors", "dtype is not a string"});
  expect_error([&] { parse(safetensors_with({{"t", {{"dtype", "F32"}, {"shape", "four"}, {"data_offsets", {0, 16}}}}}, four_floats)); },
               {"x.safetensors", "shape"});
  expect_error([&] { parse(safetensors_with({{"t", {{"dtype", "F32"}, {"shape", {-4}}, {"data_offsets", {0, 16}}}}}, four_floats)); },
               {"x.safetensors", "non-negative"});
  expect_error([&] { parse(safetensors_with({{"t", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 32}}}}}, four_floats)); },
               {"x.safetensors", "outside the data area"});
  expect_error([&] { parse(safetensors_with({{"t", 7}}, four_floats)); }, {"x.safetensors", "lacks dtype"});
  expect_error([&] { parse(safetensors_with({{"__metadata__", 7}}, "")); }, {"x.safetensors", "__metadata__"});
  expect_error([&] { parse(std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8)); }, {"x.safetensors", "exceeds file size"});
}

namespace {

train::ModelInfo tiny_info() { return ft::resnet18_info(); }

// A saved model with its description or one weight changed.
std::string tampered(const ft::TempDir& dir, const std::string& name, const std::function<void(nlohmann::json&)>& info,
                     const std::function<void(models::TensorMap&)>& weights = {}) {
  auto net = models::find_model("resnet18").build(2);
  const std::string clean = dir / "clean.safetensors";
  train::save_model(clean, *net, tiny_info());
  auto c = models::load_safetensors(clean);
  auto j = nlohmann::json::parse(c.metadata.at("fracture"));
  info(j);
  c.metadata["fracture"] = j.dump();
  if (weights) weights(c.tensors);
  const std::string path = dir / name;
  models::save_safetensors(path, c.tensors, c.metadata);
  return path;
}

}  // namespace

TEST(HostileFiles, ModelFilesAreValidatedOnLoad) {
  ft::TempDir dir;
  auto none = [](nlohmann::json&) {};
  const std::string good = tampered(dir, "good.safetensors", none);
  const auto loaded = train::load_model(good);
  EXPECT_EQ(loaded.sha256, util::sha256_hex(util::read_file(good)));
  expect_error([&] { train::load_model(tampered(dir, "t2.safetensors", [](auto& j) { j["threshold"] = 2.0; })); },
               {"t2.safetensors", "threshold"});
  expect_error([&] { train::load_model(tampered(dir, "s0.safetensors", [](auto& j) { j["input_size"] = 0; })); },
               {"s0.safetensors", "input size"});
  expect_error([&] { train::load_model(tampered(dir, "s7.safetensors", [](auto& j) { j["input_size"] = 7; })); },
               {"s7.safetensors", "input size"});
  expect_error([&] { train::load_model(tampered(dir, "std.safetensors", [](auto& j) { j["std"] = {1, 0, 1}; })); },
               {"std.safetensors", "std"});
  expect_error([&] { train::load_model(tampered(dir, "cls.safetensors", [](auto& j) { j["class_names"] = {"a", "a"}; })); },
               {"cls.safetensors", "appears twice"});
  expect_error([&] { train::load_model(tampered(dir, "type.safetensors", [](auto& j) { j["input_size"] = "big"; })); },
               {"type.safetensors", "mistyped"});
  expect_error([&] {
    train::load_model(tampered(dir, "nan.safetensors", none, [](models::TensorMap& t) {
      t.at("fc.weight")[0][0] = std::nanf("");
    }));
  }, {"nan.safetensors", "NaN or infinite values in fc.weight"});
  expect_error([&] {  // a float weight relabelled as 16-bit integers (same bytes)
    train::load_model(tampered(dir, "i16.safetensors", none, [](models::TensorMap& t) {
      auto& w = t.at("fc.weight");
      w = w.to(torch::kFloat16).view(torch::kInt16);
    }));
  }, {"i16.safetensors", "wrong kind of number", "fc.weight"});
  // A PyTorch archive given as a model.
  {
    caffe2::serialize::PyTorchStreamWriter writer(dir / "m.pth");
    writer.writeRecord("data.pkl", ".", 1);
    writer.writeEndOfFile();
  }
  expect_error([&] { train::load_model(dir / "m.pth"); }, {"m.pth", "PyTorch zip archive", "not a fracture model"});
}

TEST(HostileFiles, AnInferencePreparedNetworkCannotBeSaved) {
  ft::TempDir dir;
  auto net = models::find_model("efficientnet_lite0").build(2);
  train::prepare_for_inference(*net, torch::kCPU);
  ASSERT_TRUE(models::has_folded_batchnorm(*net));
  EXPECT_THROW(train::save_model(dir / "folded.safetensors", *net, tiny_info()), std::logic_error);
  EXPECT_FALSE(std::filesystem::exists(dir / "folded.safetensors"));
}

TEST(HostileFiles, OnlyRegularFilesAreRead) {
  ft::TempDir dir;
  const std::string fifo = dir / "pipe.jpg";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_error([&] { util::read_file(fifo); }, {fifo, "not a regular file"});
  expect_error([&] { util::read_file("/dev/zero"); }, {"/dev/zero", "not a regular file"});
  expect_error([&] { util::read_file(dir.path.string()); }, {"is a folder"});
  util::write_file_atomic(dir / "big", std::string(100, 'x'));
  expect_error([&] { util::read_file(dir / "big", 99); }, {"big", "100 bytes", "99"});
  expect_error([&] { models::load_tensor_file(fifo); }, {fifo, "not a regular file"});
}

TEST(Sha256, MatchesKnownDigests) {
  EXPECT_EQ(util::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(util::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(util::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(util::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(HostileFiles, FuzzFindingsStayFixed) {
  // Each input in tests/fuzz/regressions/pickle once crashed or leaked (the
  // sanitised build's LeakSanitizer checks the leak).
  const std::filesystem::path dir = std::filesystem::path(FRACTURE_SOURCE_DIR) / "tests/fuzz/regressions/pickle";
  const models::RecordReader records = [](const std::string&) { return std::string(16, '\0'); };
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    expect_error([&] { models::parse_state_dict_pickle(util::read_file(e.path().string()), records, "regression.pth"); },
                 {"regression.pth"});
    ++n;
  }
  EXPECT_GE(n, 2);
}
