// The bad-input corpus, end to end through `fracture`: every case of the
// hardening issue gets its exit status, a message naming the file or flag,
// and (for predict) a record per input while the other inputs are scored.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <dcmtk/dcmdata/dctk.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

#include "cli/run_cli.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "fracture/util/paths.h"
#include "helpers.h"

namespace ft = fracture::testing;
namespace fs = std::filesystem;
using fracture::util::read_file;
using fracture::util::write_file_atomic;

namespace {

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));  // throws if not JSON
  return lines;
}

// `fraction` < 1: Pixel Data honestly sized but holding only that part of
// Rows x Columns.
void write_header_only_dicom(const std::string& path, Uint16 rows, Uint16 cols, double fraction = 1) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_ComputedRadiographyImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1125.9");
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertUint16(DCM_Rows, rows);
  ds->putAndInsertUint16(DCM_Columns, cols);
  ds->putAndInsertUint16(DCM_BitsAllocated, 16);
  ds->putAndInsertUint16(DCM_BitsStored, 16);
  ds->putAndInsertUint16(DCM_HighBit, 15);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  std::vector<Uint16> px(rows == 65535 ? 10000 : static_cast<size_t>(rows * cols * fraction), 1000);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<Uint16>(i * 7 % 60000);
  ds->putAndInsertUint16Array(DCM_PixelData, px.data(), static_cast<unsigned long>(px.size()));
  ASSERT_TRUE(rows == 65535 ? ff.saveFile(path.c_str(), EXS_LittleEndianExplicit).good()
                            : ds->saveFile(path.c_str(), EXS_LittleEndianImplicit).good());
}

}  // namespace

TEST(BadInput, PredictScoresWhatItCanAndRecordsTheRest) {
  ft::TempDir dir;
  const fs::path scans = dir.path / "scans";
  ft::write_image((scans / "a/IM1.png").string(), ft::synthetic_xray(200, 240, 1, true));
  ft::write_image((scans / "b/IM1.png").string(), ft::synthetic_xray(200, 240, 2));  // same name, other folder
  ft::write_image((scans / "scan_\xff.png").string(), ft::synthetic_xray(200, 240, 3));  // not UTF-8
  write_header_only_dicom((scans / "PACS0001").string(), 64, 48);                        // DICOM: no extension, no preamble
  write_file_atomic((scans / "broken.png").string(), "not a png at all");
  write_file_atomic((scans / "empty.jpg").string(), "");
  write_header_only_dicom((scans / "huge.dcm").string(), 65535, 65535);
  {
    std::vector<uchar> jpg;
    cv::imencode(".jpg", ft::synthetic_xray(300, 300, 4), jpg);
    write_file_atomic((scans / "truncated.jpg").string(), std::string(jpg.begin(), jpg.begin() + jpg.size() * 2 / 3));
  }
  ASSERT_EQ(::mkfifo((scans / "pipe.jpg").c_str(), 0600), 0);  // would block a plain read forever

  const auto r = ft::run_cli("predict " + scans.string() + " " + (dir / "missing.png") + " --cam " + (dir / "cams"));
  EXPECT_EQ(r.code, 1) << r.err;  // some inputs failed, the rest scored
  const auto lines = json_lines(r.out);  // stdout: JSON lines only, no log line
  ASSERT_EQ(lines.size(), 10u) << r.out;
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& j : lines) by_name[fs::path(j["path"].get<std::string>()).filename().string()] = j;
  for (const char* bad : {"broken.png", "empty.jpg", "huge.dcm", "pipe.jpg", "missing.png", "truncated.jpg"}) {
    ASSERT_TRUE(by_name.count(bad)) << bad;
    const std::string error = by_name[bad].value("error", "");
    EXPECT_NE(error.find(bad), std::string::npos) << bad << ": " << error;  // names the file
    EXPECT_NE(r.err.find(bad), std::string::npos) << bad;                  // and on stderr
  }
  EXPECT_NE(by_name["huge.dcm"]["error"].get<std::string>().find("65535 x 65535"), std::string::npos);
  EXPECT_NE(by_name["pipe.jpg"]["error"].get<std::string>().find("not a regular file"), std::string::npos);
  // Its missing part would be filled in: not scored (issue 38), as the server refuses it.
  EXPECT_NE(by_name["truncated.jpg"]["error"].get<std::string>().find("without its end marker"), std::string::npos);
  const std::string model_sha = fracture::util::sha256_hex(read_file(fracture::util::default_model_path()));
  std::set<std::string> cams;
  for (const char* good : {"IM1.png", "scan_\\xff.png", "PACS0001"}) {
    ASSERT_TRUE(by_name.count(good)) << good << "\n" << r.out;
    const auto& j = by_name[good];
    EXPECT_FALSE(j.contains("error")) << j.dump();
    EXPECT_GE(j["probability"].get<double>(), 0.0);
    EXPECT_DOUBLE_EQ(j["probabilities"]["fractured"].get<double>(), j["probability"].get<double>());
    EXPECT_EQ(j["model_sha256"], model_sha);
  }
  for (const auto& j : lines)
    if (j.contains("cam")) {
      cams.insert(j["cam"].get<std::string>());
      EXPECT_TRUE(fs::exists(j["cam"].get<std::string>())) << j.dump();
    }
  EXPECT_EQ(cams.size(), 4u);  // a/IM1.png and b/IM1.png got a heat map each
  EXPECT_EQ(r.err.find("{\""), std::string::npos) << "results belong on stdout";
}

TEST(BadInput, PredictOutputIsStreamedAndCsvListsAreForgiving) {
  ft::TempDir dir;
  for (int i = 0; i < 3; ++i) ft::write_image(dir / ("img" + std::to_string(i) + ".png"), ft::synthetic_xray(120, 140, i));
  // A list with a byte-order mark and an upper-case header, as spreadsheets write.
  write_file_atomic(dir / "list.CSV", "\xef\xbb\xbfPATH,note\nimg0.png,x\nimg1.png,y\n\"img2.png\",z\n");
  const auto r = ft::run_cli("predict " + (dir / "list.CSV") + " --batch-size 1 --format csv -o " + (dir / "p.csv"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  const std::string csv = read_file(dir / "p.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4) << csv;
  // The original columns keep their places; every class's probability follows.
  EXPECT_EQ(csv.rfind("path,probability,label,threshold,model,model_sha256,cam,error,p_non_fractured,p_fractured\n", 0), 0u)
      << csv;
  // An unterminated quote is an error naming the list and line, not one path swallowing the file.
  write_file_atomic(dir / "bad.csv", "path\n\"img0.png\nimg1.png\n");
  const auto b = ft::run_cli("predict " + (dir / "bad.csv"));
  EXPECT_EQ(b.code, 2);
  EXPECT_NE(b.err.find("bad.csv:2"), std::string::npos) << b.err;
}

TEST(BadInput, FlagsAreCheckedBeforeAnyWork) {
  ft::TempDir dir;
  const std::string img = dir / "x.png";
  ft::write_image(img, ft::synthetic_xray(64, 64, 1));
  const std::string data = " --data " + dir.path.string() + " --out " + (dir / "run");
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases = {
      {"predict --batch-size 0 " + img, "--batch-size"},
      {"predict --batch-size -3 " + img, "--batch-size"},
      {"predict --device tpu " + img, "--device tpu"},
      {"predict --workers 0 " + img, "--workers"},
      {"train --size 100000" + data, "--size 100000"},
      {"train --lr nan" + data, "--lr"},
      {"train --device tpu" + data, "--device tpu"},
      {"train --freeze last:abc" + data, "last:abc"},
      {"train --epochs 0" + data, "--epochs 0"},
      {"train --threshold fixd:0.3" + data, "fixd:0.3"},
      {"train --threshold sensitivity:1.5" + data, "sensitivity:1.5"},
      {"train --batch-size 0" + data, "--batch-size 0"},
      {"evaluate --bootstrap -5 --data " + img, "--bootstrap"},
      {"evaluate --threshold 2 --data " + img, "--threshold"},
      {"split --val 0.9 --test 0.9 --data " + dir.path.string(), "--val"},
      {"predict --max-megapixels nan " + img, "--max-megapixels"},  // a range check passes NaN
      {"predict --max-megapixels inf " + img, "--max-megapixels"},
      {"serve --max-megapixels nan --port 0", "--max-megapixels"},
      {"evaluate --threshold nan --data " + img, "--threshold"},
  };
  for (const auto& c : cases) {
    const auto r = ft::run_cli(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.find("caching"), std::string::npos) << c.args << ": work started before the check";
    EXPECT_TRUE(r.out.empty()) << c.args << "\n" << r.out;
  }
  EXPECT_FALSE(fs::exists(dir / "run/train.log")) << "a refused run writes nothing";
}

TEST(BadInput, ModelFilesThatAreNotModelsAreNamed) {
  ft::TempDir dir;
  const std::string img = dir / "x.png";
  ft::write_image(img, ft::synthetic_xray(64, 64, 1));
  write_file_atomic(dir / "junk.safetensors", std::string("\x11\0\0\0\0\0\0\0", 8) + "{\"a\":{\"dtype\":1}}");
  auto r = ft::run_cli("predict -m " + (dir / "junk.safetensors") + " " + img);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("junk.safetensors"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

// Issue 38's silent wrong answers and fatal listings, end to end: pixels
// that are not all there are an error naming the file, never a score; a
// symbolic link loop in a folder is named while the rest is scored; a
// manifest split in part is refused naming its rows before any work.
TEST(BadInput, NoScoreWithoutThePixelsAndNoSilentResplit) {
  ft::TempDir dir;
  const fs::path scans = dir.path / "scans";
  ft::write_image((scans / "good.png").string(), ft::synthetic_xray(120, 140, 5, true));
  write_header_only_dicom((scans / "cut.dcm").string(), 64, 48, 0.3);
  write_header_only_dicom((scans / "claims-100mp.dcm").string(), 10000, 10000, 0.0001);
  fs::create_directories(scans / "sub");
  fs::create_symlink("selfdir", scans / "sub/selfdir");  // points at itself
  const auto r = ft::run_cli("predict " + scans.string());
  EXPECT_EQ(r.code, 1) << r.err;
  const auto lines = json_lines(r.out);
  std::map<std::string, nlohmann::json> by_name;
  for (const auto& j : lines) by_name[fs::path(j["path"].get<std::string>()).filename().string()] = j;
  ASSERT_EQ(by_name.size(), 4u) << r.out;
  EXPECT_FALSE(by_name["good.png"].contains("error")) << by_name["good.png"].dump();
  for (const char* bad : {"cut.dcm", "claims-100mp.dcm", "selfdir"}) {
    const std::string error = by_name[bad].value("error", "");
    EXPECT_NE(error.find(bad), std::string::npos) << bad << ": " << by_name[bad].dump();
    EXPECT_FALSE(by_name[bad].contains("probability")) << by_name[bad].dump();
  }
  EXPECT_NE(by_name["cut.dcm"]["error"].get<std::string>().find("truncated"), std::string::npos);

  // A hand-split manifest with one empty split cell and one row cut short.
  std::string csv = "path,label,split\n";
  for (int i = 0; i < 6; ++i) {
    ft::write_image(dir / ("m" + std::to_string(i) + ".png"), ft::synthetic_xray(64, 64, 10 + i, i % 2 == 1));
    csv += "m" + std::to_string(i) + ".png," + std::to_string(i % 2) + (i == 2 ? "," : i == 4 ? "" : i < 3 ? ",train" : ",test") + "\n";
  }
  write_file_atomic(dir / "hand.csv", csv);
  const auto t = ft::run_cli("train --data " + (dir / "hand.csv") + " --epochs 1 --out " + (dir / "run"));
  EXPECT_EQ(t.code, 2) << t.err;
  EXPECT_NE(t.err.find("hand.csv: line(s) 4, 6 have no split value"), std::string::npos) << t.err;
  EXPECT_FALSE(fs::exists(dir / "run/split.csv"));
  const auto e = ft::run_cli("evaluate --data " + (dir / "hand.csv"));
  EXPECT_EQ(e.code, 2) << e.err;
  EXPECT_NE(e.err.find("line(s) 4, 6"), std::string::npos) << e.err;
}
