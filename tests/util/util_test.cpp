#include <gtest/gtest.h>

#include <dlfcn.h>

#include <filesystem>

#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/runtime.h"
#include "helpers.h"

using namespace fracture;

TEST(AtomicFile, WritesAndReplacesLeavingNoTemporary) {
  fracture::testing::TempDir dir;
  const std::string p = dir / "sub/out.txt";
  util::write_file_atomic(p, "first");
  util::write_file_atomic(p, "second");
  EXPECT_EQ(util::read_file(p), "second");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path / "sub")) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(AtomicFile, FailureKeepsOldContentAndNamesPath) {
  fracture::testing::TempDir dir;
  const std::string p = dir / "out.txt";
  util::write_file_atomic(p, "keep me");
  std::filesystem::create_directory(dir / "blocker");  // a directory cannot be replaced by a file
  try {
    util::write_file_atomic(dir / "blocker", "x");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("blocker"), std::string::npos);
  }
  EXPECT_EQ(util::read_file(p), "keep me");
}

TEST(AtomicFile, ReadMissingFileNamesIt) {
  try {
    util::read_file("/nonexistent/file.bin");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/file.bin"), std::string::npos);
  }
}

TEST(Hash, Fnv1aKnownValuesAndSeedMixing) {
  EXPECT_EQ(util::fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(util::fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_NE(util::mix_seed(1, 2, 3), util::mix_seed(1, 3, 2));
  EXPECT_EQ(util::mix_seed(1, 2, 3), util::mix_seed(1, 2, 3));
  EXPECT_EQ(util::to_hex(255), "00000000000000ff");
}

// std::filesystem must run libstdc++'s own code, not the private copy that
// PyTorch's wheels export from libtorch_cpu.so (see src/CMakeLists.txt): built
// against LibTorch 2.11 with LibTorch linked first, every test that removed a
// temporary folder crashed.
TEST(Linking, StdFilesystemIsLibstdcxxs) {
  using RemoveAll = std::uintmax_t (*)(const std::filesystem::path&);
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(static_cast<RemoveAll>(&std::filesystem::remove_all)), &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("libstdc++"), std::string::npos) << info.dli_fname;
}

TEST(Machine, ReadsTheCpuAndItsInstructionSetsFromCpuinfo) {
  const std::string cpuinfo =
      "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
      "flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile amx_bf16\n\n"
      "processor\t: 1\nmodel name\t: another CPU\nflags\t\t: fpu\n";
  unsetenv("ONEDNN_MAX_CPU_ISA");
  setenv("DNNL_MAX_CPU_ISA", "AVX2", 1);
  const auto m = util::describe_machine(cpuinfo);
  unsetenv("DNNL_MAX_CPU_ISA");
  EXPECT_EQ(m.cpu, "Intel(R) Xeon(R) Processor") << "the first processor's";
  EXPECT_EQ(m.isa, (std::vector<std::string>{"avx2", "avx512f", "amx_tile"})) << "avx512_bf16 is not in its flags";
  EXPECT_EQ(m.onednn_isa_cap, "AVX2");
  EXPECT_GE(m.threads, 1);
  EXPECT_EQ(m.str().rfind("Intel(R) Xeon(R) Processor (avx2 avx512f amx_tile), oneDNN capped at AVX2, ", 0), 0u) << m.str();

  const auto unknown = util::describe_machine("");
  EXPECT_EQ(unknown.cpu, "");
  EXPECT_TRUE(unknown.isa.empty());
  EXPECT_EQ(unknown.str().rfind("unknown CPU (no AVX2), ", 0), 0u) << unknown.str();
}
