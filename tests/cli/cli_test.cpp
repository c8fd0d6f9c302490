// The `fracture` executable end to end, as a user runs it.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cli/run_cli.h"
#include "data/fixtures.h"
#include "fracture/data/dataset.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"
#include "small_model.h"

namespace ft = fracture::testing;

namespace {

struct Result {
  int code;
  std::string output;
};

Result run(const std::string& args) {
  const std::string cmd = std::string(FRACTURE_CLI) + " " + args + " 2>&1";
  std::FILE* pipe = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) out.append(buf.data(), n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

}  // namespace

TEST(Cli, HelpListsSubcommands) {
  const auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* sub : {"split", "models", "weights", "imagenet"}) EXPECT_NE(r.output.find(sub), std::string::npos) << sub;
  EXPECT_NE(r.output.find("not a medical device"), std::string::npos);
}

TEST(Cli, SplitWritesManifestAndPrintsCounts) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 60, 64);
  const auto r = run("split --data " + dir.path.string() + " --out " + (dir / "out/split.csv") + " --seed 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("IMG0000003.jpg"), std::string::npos);  // label disagreement warned
  EXPECT_NE(r.output.find("train  all"), std::string::npos) << r.output;
  const auto d = fracture::data::load_dataset(dir / "out/split.csv");
  EXPECT_EQ(d.samples.size(), 60u);
  EXPECT_FALSE(d.subset("test").empty());
}

TEST(Cli, BadInputGivesClearErrorAndNonZeroExit) {
  auto r = run("split --data /nonexistent/folder");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("/nonexistent/folder"), std::string::npos) << r.output;
  r = run("imagenet --model no_such_model /etc/hostname");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("known models"), std::string::npos) << r.output;
}

#include "train/fixtures.h"

TEST(Cli, TrainEvaluatePredictWithHeatMaps) {
  ft::TempDir dir;
  ft::make_square_dataset(dir, 10, 5, 96);
  const std::string rundir = dir / "run";
  auto r = run("train --data " + dir.path.string() + " --out " + rundir + " --size 96 --epochs 3 --lr 3e-3 --seed 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("val ROC-AUC"), std::string::npos);
  EXPECT_NE(r.output.find("average of epochs 1-3"), std::string::npos) << r.output;  // the default --average 6
  EXPECT_NE(r.output.find("box supervision off: no fractured training image has boxes"), std::string::npos) << r.output;
  for (const char* f : {"best.safetensors", "best-epoch.safetensors", "config.toml", "split.csv", "train.log", "metrics.jsonl"})
    EXPECT_TRUE(std::filesystem::exists(rundir + "/" + f)) << f;

  // The written config reproduces the run's options.
  r = run("train --config " + rundir + "/config.toml --out " + (dir / "again") + " --epochs 1");
  ASSERT_EQ(r.code, 0) << r.output;

  r = run("evaluate -m " + rundir + "/best.safetensors --data " + rundir + "/split.csv --split test --bootstrap 100");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("roc_auc"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(rundir + "/eval-test/report.md"));

  // An ensemble of a model with itself scores as the model alone; its
  // threshold is chosen on validation, and it needs its own --out.
  r = run("evaluate -m " + rundir + "/best.safetensors --ensemble " + rundir + "/best.safetensors --data " + rundir +
          "/split.csv --split test --bootstrap 100");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;
  r = run("evaluate -m " + rundir + "/best.safetensors --ensemble " + rundir + "/best.safetensors --data " + rundir +
          "/split.csv --split test --bootstrap 100 -o " + (dir / "ens"));
  ASSERT_EQ(r.code, 0) << r.output;
  {
    const auto single = nlohmann::json::parse(fracture::util::read_file(rundir + "/eval-test/metrics.json"));
    const auto ens = nlohmann::json::parse(fracture::util::read_file(dir / "ens/metrics.json"));
    EXPECT_NEAR(ens["metrics"]["roc_auc"]["value"].get<double>(), single["metrics"]["roc_auc"]["value"].get<double>(), 1e-9);
    EXPECT_EQ(single["model_sha256"], fracture::util::sha256_hex(fracture::util::read_file(rundir + "/best.safetensors")));
    EXPECT_EQ(ens["model_sha256"], single["model_sha256"].get<std::string>() + " + " + single["model_sha256"].get<std::string>());
    EXPECT_NE(ens["threshold_rule"].get<std::string>().find("ensemble of 2"), std::string::npos) << ens.dump();
    EXPECT_NE(ens["model"].get<std::string>().find(" + "), std::string::npos);
  }

  fracture::util::write_file_atomic(dir / "broken.png", "not a png");
  r = run("predict -m " + rundir + "/best.safetensors " + (dir / "test/fracture") + " " + (dir / "broken.png") +
          " --cam " + (dir / "cams") + " --out " + (dir / "p.csv"));
  ASSERT_EQ(r.code, 1) << r.output;  // one input failed, the rest were scored
  EXPECT_NE(r.output.find("broken.png"), std::string::npos) << "unreadable file must be named";
  const std::string csv = fracture::util::read_file(dir / "p.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 7);  // header + 5 images + broken.png's error record
  EXPECT_NE(csv.find("broken.png,,,,"), std::string::npos) << csv;
  int cams = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "cams"))
    cams += e.path().filename().string().rfind("0_", 0) == 0 && e.path().extension() == ".png";
  EXPECT_EQ(cams, 1);
  r = run("predict -m " + rundir + "/best.safetensors " + (dir / "test/normal/0.png"));
  ASSERT_EQ(r.code, 0);
  EXPECT_NE(r.output.find("\"probability\""), std::string::npos) << r.output;
}

TEST(Cli, PredictWithoutModelUsesTheBuiltInOne) {
  ft::TempDir dir;
  const std::string img = dir / "scan.png";
  cv::imwrite(img, ft::synthetic_xray(640, 800, 11, true));
  const auto r = ft::run_cli("predict " + img);
  ASSERT_EQ(r.code, 0) << r.err;
  // Standard output is the JSON line alone: the log went to standard error.
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.err.find("predicted 1 images"), std::string::npos) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"], "fracatlas.safetensors");
  EXPECT_GE(j["probability"].get<double>(), 0.0);
  EXPECT_LE(j["probability"].get<double>(), 1.0);

  // Built-in models are found by name; a name or a path that leads nowhere is named.
  const auto named = ft::run_cli("predict -m fracatlas " + img);
  ASSERT_EQ(named.code, 0) << named.err;
  EXPECT_EQ(named.out, r.out);
  const auto unknown = ft::run_cli("predict -m bone-types-v9 " + img);
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("no built-in model of that name"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("bone-types-v9.safetensors"), std::string::npos) << unknown.err;
  const auto missing = ft::run_cli("predict -m " + (dir / "gone.safetensors") + " " + img);
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("gone.safetensors: no such model file"), std::string::npos) << missing.err;
}

// Two data sets in one run: the split keeps them apart, validation and
// evaluation report each, sampling weights apply, and config.toml keeps both.
TEST(Cli, TrainsAndEvaluatesOnTwoSources) {
  ft::TempDir a, b, dir;
  ft::make_square_dataset(a, 8, 4, 96);
  ft::make_square_dataset(b, 8, 4, 96);
  const std::string name_a = a.path.filename().string(), name_b = b.path.filename().string();
  const std::string rundir = dir / "run";
  auto r = run("split --data " + a.path.string() + " --data " + b.path.string() + " --keep-existing --out " +
               (dir / "split.csv"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("source " + name_b), std::string::npos) << r.output;
  r = run("train --data " + (dir / "split.csv") + " --out " + rundir + " --size 96 --epochs 2 --seed 1 --source-weights " +
          name_a + "=3," + name_b + "/normal=0.5");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("val ROC-AUC"), std::string::npos);
  EXPECT_NE(r.output.find("(mean of " + name_a + " "), std::string::npos) << r.output;
  const std::string jsonl = fracture::util::read_file(rundir + "/metrics.jsonl");
  const auto epoch = nlohmann::json::parse(jsonl.substr(0, jsonl.find('\n')));
  ASSERT_TRUE(epoch.contains("val_auc_by_source")) << epoch.dump();
  const double mean = (epoch["val_auc_by_source"][name_a].get<double>() + epoch["val_auc_by_source"][name_b].get<double>()) / 2;
  EXPECT_NEAR(epoch["val_auc"].get<double>(), mean, 1e-12);  // the selection rule (train/validation.h)

  r = run("train --data " + (dir / "split.csv") + " --out " + (dir / "bad") + " --source-weights nowhere=2");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("no training image comes from 'nowhere'"), std::string::npos) << r.output;
  r = run("train --data " + (dir / "split.csv") + " --out " + (dir / "bad") + " --source-weights " + name_b + "/broken=2");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("no training image comes from '" + name_b + "/broken' (SOURCE/CLASS)"), std::string::npos)
      << r.output;

  r = run("evaluate -m " + rundir + "/best.safetensors --data " + (dir / "split.csv") + " --split test --bootstrap 50");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find(name_a + " "), std::string::npos) << r.output;
  const auto metrics = nlohmann::json::parse(fracture::util::read_file(rundir + "/eval-test/metrics.json"));
  EXPECT_EQ(metrics["by_source"][name_b]["n"], 8) << metrics.dump();

  // Two --data flags are kept in config.toml as a list and given back by --config.
  r = run("train --data " + a.path.string() + " --data " + b.path.string() + " --out " + (dir / "direct") +
          " --size 96 --epochs 1 --seed 1");
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string toml = fracture::util::read_file(dir / "direct/config.toml");
  EXPECT_NE(toml.find("data = [\"" + a.path.string() + "\", \"" + b.path.string() + "\"]"), std::string::npos) << toml;
  r = run("train --config " + (dir / "direct/config.toml") + " --out " + (dir / "again") + " --epochs 1");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(fracture::util::read_file(dir / "again/split.csv"), fracture::util::read_file(dir / "direct/split.csv"));
}

namespace {

// Three generated "fracture types" (ImageFolder layout): a square, a bar, or
// neither, each at random places; returns the test images.
std::vector<std::pair<std::string, std::string>> make_three_types(const ft::TempDir& dir, int train, int eval, int size) {
  std::vector<std::pair<std::string, std::string>> test;
  unsigned seed = 7;
  for (const std::string split : {"train", "val", "test"})
    for (const std::string type : {"bar", "plain", "square"})
      for (int i = 0; i < (split == "train" ? train : eval); ++i) {
        cv::Mat img = ft::square_image(size, seed++, type == "square", nullptr);
        if (type == "bar") cv::rectangle(img, cv::Rect(size / 6 + (i * 5) % (size / 2), size / 8, size / 10, size * 3 / 4), cv::Scalar(240), -1);
        const std::string path = dir / (split + "/" + type + "/" + std::to_string(i) + ".png");
        ft::write_image(path, img);
        if (split == "test") test.emplace_back(path, type);
      }
  return test;
}

}  // namespace

// A model of more than two classes: evaluate reports the multiclass metrics,
// predict gives every class's probability and the most probable class, and
// heat maps explain the predicted class or the one asked for.
TEST(Cli, ThreeClassModelEvaluatesAndPredicts) {
  ft::TempDir dir;
  const auto test = make_three_types(dir, 8, 4, 96);
  const std::string rundir = dir / "run";
  auto r = run("train --data " + dir.path.string() + " --out " + rundir + " --size 96 --epochs 2 --seed 1");
  ASSERT_EQ(r.code, 0) << r.output;

  auto e = ft::run_cli("evaluate -m " + rundir + "/best.safetensors --data " + rundir + "/split.csv --bootstrap 50");
  ASSERT_EQ(e.code, 0) << e.err;
  for (const char* metric : {"accuracy", "balanced_accuracy", "macro_f1", "macro_roc_auc", "top2_accuracy", "cohen_kappa"})
    EXPECT_NE(e.out.find(metric), std::string::npos) << metric << "\n" << e.out;
  const auto m = nlohmann::json::parse(fracture::util::read_file(rundir + "/eval-test/metrics.json"));
  EXPECT_EQ(m["n"], 12);
  EXPECT_EQ(m["classes"], nlohmann::json({"bar", "plain", "square"}));
  int total = 0;
  for (const auto& row : m["confusion"]["counts"])
    for (const auto& v : row) total += v.get<int>();
  EXPECT_EQ(total, 12);
  EXPECT_EQ(m["per_class"]["square"]["support"], 4);
  EXPECT_TRUE(m["per_class"]["bar"]["roc_auc"]["ci95_low"].is_number()) << m.dump();
  for (const char* f : {"report.md", "confusion.svg", "predictions.csv"})
    EXPECT_TRUE(std::filesystem::exists(rundir + "/eval-test/" + f)) << f;
  const std::string predictions = fracture::util::read_file(rundir + "/eval-test/predictions.csv");
  EXPECT_EQ(predictions.rfind("path,label,predicted,p_bar,p_plain,p_square,source\n", 0), 0u) << predictions;
  // A two-class threshold means nothing here.
  EXPECT_EQ(run("evaluate -m " + rundir + "/best.safetensors --data " + rundir + "/split.csv --threshold 0.3").code, 2);

  std::string inputs;
  for (const auto& [path, type] : test) inputs += " " + path;
  const auto p = ft::run_cli("predict -m " + rundir + "/best.safetensors" + inputs + " --cam " + (dir / "cams"));
  ASSERT_EQ(p.code, 0) << p.err;
  std::istringstream lines(p.out);
  int n = 0;
  for (std::string line; std::getline(lines, line); ++n) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_FALSE(j.contains("threshold")) << line;
    ASSERT_EQ(j["probabilities"].size(), 3u) << line;
    std::string best;
    double sum = 0, top = -1;
    for (const auto& [name, v] : j["probabilities"].items()) {
      sum += v.get<double>();
      if (v.get<double>() > top) top = v.get<double>(), best = name;
    }
    EXPECT_NEAR(sum, 1.0, 1e-4) << line;
    EXPECT_EQ(j["label"], best) << line;
    EXPECT_DOUBLE_EQ(j["probability"].get<double>(), top) << line;
    EXPECT_TRUE(std::filesystem::exists(j["cam"].get<std::string>())) << line;
  }
  EXPECT_EQ(n, 12);
  // --types: the fracture model's record and, beside it, the type model's.
  const auto typed = ft::run_cli("predict " + test[0].first + " " + test[5].first + " --types-model " + rundir +
                                 "/best.safetensors --format csv");
  ASSERT_EQ(typed.code, 0) << typed.err;
  EXPECT_EQ(typed.out.rfind("path,probability,label,threshold,model,model_sha256,cam,error,p_non_fractured,p_fractured,"
                            "type,type_bar,type_plain,type_square\n", 0), 0u) << typed.out;
  const auto typed_json = ft::run_cli("predict " + test[0].first + " --types-model " + rundir + "/best.safetensors");
  ASSERT_EQ(typed_json.code, 0) << typed_json.err;
  const auto tj = nlohmann::json::parse(typed_json.out);
  EXPECT_EQ(tj["model"], "fracatlas.safetensors");
  ASSERT_EQ(tj["types"].size(), 3u) << typed_json.out;
  EXPECT_TRUE(tj["types"].contains(tj["type"].get<std::string>())) << typed_json.out;
  r = run("predict -m " + rundir + "/best.safetensors " + test[0].first + " --cam " + (dir / "c2") + " --cam-class square");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run("predict -m " + rundir + "/best.safetensors " + test[0].first + " --cam " + (dir / "c3") + " --cam-class spiral");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("bar, plain, square"), std::string::npos) << r.output;
}

// An archive split over processes: the shards are disjoint, cover every
// input, and each writes its own file; a bad shard or torchrun without a
// per-rank output is refused before any scoring.
TEST(Cli, PredictShardsCoverTheInputsOnce) {
  ft::TempDir dir;
  const std::string scans = dir / "scans";
  std::filesystem::create_directories(scans);
  for (int i = 0; i < 7; ++i) cv::imwrite(scans + "/" + std::to_string(i) + ".png", ft::synthetic_xray(96, 120, 20 + i));
  const auto whole = ft::run_cli("predict " + scans);
  ASSERT_EQ(whole.code, 0) << whole.err;
  std::multiset<std::string> all, merged;
  std::istringstream lines(whole.out);
  for (std::string line; std::getline(lines, line);) all.insert(line);
  ASSERT_EQ(all.size(), 7u);
  for (int s = 0; s < 3; ++s) {
    const auto r = ft::run_cli("predict " + scans + " --shard " + std::to_string(s) + "/3 --out " + (dir / "p-{shard}.jsonl"));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    std::istringstream part(fracture::util::read_file(dir / ("p-" + std::to_string(s) + ".jsonl")));
    for (std::string line; std::getline(part, line);) merged.insert(line);
  }
  EXPECT_EQ(merged, all) << "the shards' records, merged, are the whole run's";
  for (const char* bad : {"3/3", "1", "-1/3", "1/0", "a/b", "1/2/3"}) {
    const auto r = ft::run_cli("predict " + scans + " --shard " + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_NE(r.err.find("--shard: '" + std::string(bad) + "': must be I/N"), std::string::npos) << r.err;
  }
  const auto ranked = ft::run_cli("predict " + scans + " --out " + (dir / "same.jsonl"),
                                  "WORLD_SIZE=2 RANK=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29555");
  EXPECT_EQ(ranked.code, 2);
  EXPECT_NE(ranked.err.find("put {shard} in --out"), std::string::npos) << ranked.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "same.jsonl"));
}

// `fracture calibrate` writes the int8 copy and says on stdout what it
// measured and what its check found, logs on stderr; the copy predicts;
// bad flags fail before any work.
TEST(Cli, AverageWritesOneModelAndPrintsOneLine) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 24, 64);
  ASSERT_EQ(ft::run_cli("split --data " + dir.path.string() + " --out " + (dir / "split.csv") + " --seed 1").code, 0);
  const auto a = ft::save_random_model(dir / "a.safetensors", "efficientnet_lite0", 2, 64, 0, 1);
  const auto b = ft::save_random_model(dir / "b.safetensors", "efficientnet_lite0", 2, 64, 0, 2);
  const auto r = ft::run_cli("average " + a + " " + b + " --data " + (dir / "split.csv") + " -o " + (dir / "avg.safetensors"));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find("avg.safetensors: the average of 2 models; val ROC-AUC "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(youden on validation, average of 2 models)"), std::string::npos) << r.out;
  const auto d = fracture::data::load_dataset(dir / "split.csv");
  const auto p = ft::run_cli("predict -m " + (dir / "avg.safetensors") + " " + d.samples[0].path);
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(nlohmann::json::parse(p.out)["model"], "avg.safetensors");

  const auto one = ft::run_cli("average " + a + " --data " + (dir / "split.csv") + " -o " + (dir / "x.safetensors"));
  EXPECT_EQ(one.code, 2);
  EXPECT_TRUE(one.out.empty()) << one.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
  const auto rule = ft::run_cli("average " + a + " " + b + " --data " + (dir / "split.csv") + " --threshold median -o " +
                                (dir / "x.safetensors"));
  EXPECT_EQ(rule.code, 2);
  EXPECT_NE(rule.err.find("--threshold"), std::string::npos) << rule.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

TEST(Cli, CalibrateWritesAnInt8CopyAndItsCheck) {
  ft::TempDir dir;
  ft::make_fracatlas(dir, 40, 64);
  ASSERT_EQ(ft::run_cli("split --data " + dir.path.string() + " --out " + (dir / "split.csv") + " --seed 1").code, 0);
  const auto model = ft::save_random_model(dir / "lite.safetensors", "efficientnet_lite0", 2, 64, 0, 3);
  const auto r = ft::run_cli("calibrate -m " + model + " --data " + (dir / "split.csv") + " --images 8 -o " +
                             (dir / "lite-int8.safetensors"));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2) << r.out;
  EXPECT_NE(r.out.find("int8 ranges of 49 activations from 8 train images (0 unreadable), from lite.safetensors"),
            std::string::npos) << r.out;
  EXPECT_TRUE(r.out.find("int8 check on ") != std::string::npos || r.out.find("int8 check: not run (") != std::string::npos)
      << r.out;
  const auto d = fracture::data::load_dataset(dir / "split.csv");
  const auto p = ft::run_cli("predict -m " + (dir / "lite-int8.safetensors") + " " + d.samples[0].path);
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(nlohmann::json::parse(p.out)["model"], "lite-int8.safetensors");

  const auto bad = ft::run_cli("calibrate -m " + model + " --data " + (dir / "split.csv") + " --percentile 20 -o " +
                               (dir / "x.safetensors"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(bad.out.empty()) << bad.out;
  EXPECT_NE(bad.err.find("--percentile"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}
