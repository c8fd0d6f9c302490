// `fracture serve` on loopback (an ephemeral port), with generated images:
// concurrent clients get the CLI's probabilities, bad input gets a 4xx that
// names it while the server keeps serving, limits hold, metrics move, every
// answer matches docs/openapi.json, and a stop answers what is in flight.
#include <gtest/gtest.h>
#include <httplib.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dcmtk/dcmdata/dctk.h>

#include <future>
#include <opencv2/imgcodecs.hpp>
#include <regex>
#include <thread>

#include "cli/run_cli.h"
#include "fracture/serve/base64.h"
#include "fracture/serve/server.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/paths.h"
#include "helpers.h"
#include "small_model.h"
#include "serve/openapi_check.h"
#include "serve/running_server.h"

namespace ft = fracture::testing;
using namespace fracture;
using json = nlohmann::json;

namespace {

std::string encoded(const cv::Mat& image, const std::string& ext) {
  std::vector<uchar> bytes;
  cv::imencode(ext, image, bytes);
  return {bytes.begin(), bytes.end()};
}

json body_of(const httplib::Result& r) { return json::parse(r->body); }

ft::OpenApiCheck openapi() { return ft::OpenApiCheck(json::parse(util::read_file(FRACTURE_SOURCE_DIR "/docs/openapi.json"))); }

#define EXPECT_MATCHES_SCHEMA(value, schema)                                     \
  do {                                                                           \
    const auto problems_ = openapi().problems(value, schema);                    \
    EXPECT_TRUE(problems_.empty()) << (problems_.empty() ? "" : problems_[0]);   \
  } while (0)

// A metric's value from the Prometheus text, or -1.
double metric(const std::string& text, const std::string& series) {
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

class Serve : public ::testing::Test {
 protected:
  void SetUp() override {
    model = ft::save_small_model(dir / "served.safetensors", {"normal", "fracture"}, 0.4, 5);
    for (int i = 0; i < 8; ++i) {
      paths.push_back(dir / ("xray" + std::to_string(i) + (i % 2 ? ".png" : ".jpg")));
      ft::write_image(paths.back(), ft::synthetic_xray(80 + 9 * i, 100 + 5 * i, 20 + i, i % 3 == 0));
    }
    options.model = model;
  }
  ft::TempDir dir;
  std::string model;
  std::vector<std::string> paths;
  PredictorOptions options;
};

}  // namespace

TEST_F(Serve, ThirtyTwoConcurrentClientsGetTheCliProbabilities) {
  std::string args = "-q predict -m " + model;
  for (const auto& p : paths) args += " " + p;
  const auto cli = ft::run_cli(args);
  ASSERT_EQ(cli.code, 0) << cli.err;
  std::map<std::string, json> expected;
  std::istringstream lines(cli.out);
  for (std::string line; std::getline(lines, line);) {
    const auto j = json::parse(line);
    expected[std::filesystem::path(j["path"].get<std::string>()).filename().string()] = j;
  }
  ASSERT_EQ(expected.size(), paths.size());

  serve::ServerOptions s;
  s.max_batch = 8;
  // Wide enough that a loaded machine (ctest -j2 beside training tests),
  // starting the 32 clients slowly, still gathers some of their requests.
  s.batch_wait_ms = 250;
  s.threads = 32;
  s.max_client_connections = 32;  // all from this one address (the default lets one address hold half)
  ft::Running server(options, s);
  std::vector<std::future<std::vector<std::string>>> clients;
  for (int c = 0; c < 32; ++c)
    clients.push_back(std::async(std::launch::async, [&, c] {
      std::vector<std::string> problems;
      auto client = server.client();
      for (int k = 0; k < 2; ++k) {
        const auto& path = paths[static_cast<size_t>(c + k) % paths.size()];
        const std::string name = std::filesystem::path(path).filename().string();
        const auto r = client.Post(("/v1/predict?name=" + name).c_str(), util::read_file(path), "application/octet-stream");
        if (!r || r->status != 200) {
          problems.push_back(name + ": " + (r ? r->body : "no answer: " + httplib::to_string(r.error())));
          continue;
        }
        const auto got = json::parse(r->body), want = expected.at(name);
        for (const auto& cls : {"normal", "fracture"})
          // The same preprocessing and network; only the batch it shared differs (summation order).
          if (std::abs(got["probabilities"][cls].get<double>() - want["probabilities"][cls].get<double>()) > 1e-5)
            problems.push_back(name + ": " + got.dump() + " vs the CLI's " + want.dump());
        if (got["label"] != want["label"] || got["model_sha256"] != want["model_sha256"] ||
            got["threshold"] != want["threshold"] || got["model"] != want["model"])
          problems.push_back(name + ": fields differ from the CLI's: " + got.dump() + " vs " + want.dump());
      }
      return problems;
    }));
  for (auto& c : clients)
    for (const auto& problem : c.get()) ADD_FAILURE() << problem;
  const auto text = server.client().Get("/metrics")->body;
  EXPECT_EQ(metric(text, "fracture_images_scored_total"), 64);
  EXPECT_EQ(metric(text, "fracture_requests_total{route=\"/v1/predict\",status=\"200\"}"), 64);
  // Requests were gathered: fewer forward passes than images.
  EXPECT_LT(metric(text, "fracture_batch_size_count"), 64) << text;
}

TEST_F(Serve, BadInputGetsA4xxNamingItAndTheServerKeepsServing) {
  options.max_pixels = 300 * 300;
  serve::ServerOptions s;
  s.max_body_mb = 1;
  ft::Running server(options, s);
  auto client = server.client();
  const std::string good = util::read_file(paths[0]);
  std::string structured_report;
  {
    DcmFileFormat ff;
    ff.getDataset()->putAndInsertString(DCM_SOPClassUID, UID_BasicTextSRStorage);
    ff.getDataset()->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1125.7");
    ff.getDataset()->putAndInsertString(DCM_Modality, "SR");
    ASSERT_TRUE(ff.saveFile((dir / "report.dcm").c_str(), EXS_LittleEndianExplicit).good());
    structured_report = util::read_file(dir / "report.dcm");
  }
  std::string corrupt_png = encoded(ft::synthetic_xray(120, 120, 4), ".png");
  for (size_t i = 60; i < corrupt_png.size() - 20; ++i) corrupt_png[i] = static_cast<char>(i * 7);
  struct Case {
    std::string what, body;
    int status;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"empty body", "", 400, "empty_body"},
      {"not an image", "just some text, not a picture", 415, "not_an_image"},
      {"truncated JPEG", good.substr(0, good.size() / 2), 422, "corrupt_image"},
      {"corrupt PNG", corrupt_png, 422, "corrupt_image"},
      {"a DICOM without an image", structured_report, 415, "unsupported_image"},
      {"too many pixels", encoded(cv::Mat(400, 400, CV_8UC1, cv::Scalar(90)), ".png"), 413, "too_large"},
      {"too large a body", std::string(1 << 20, '\xff') + "more", 413, "too_large"},
  };
  for (const auto& c : cases) {
    const auto r = client.Post("/v1/predict?name=case.bin", c.body, "application/octet-stream");
    ASSERT_TRUE(r) << c.what;
    EXPECT_EQ(r->status, c.status) << c.what << ": " << r->body;
    const auto j = body_of(r);
    EXPECT_EQ(j["error"], c.error) << c.what << ": " << r->body;
    EXPECT_MATCHES_SCHEMA(j, "Error");
    if (c.status != 413 && c.error != "empty_body")  // the detail names the upload
      EXPECT_NE(j["detail"].get<std::string>().find("case.bin"), std::string::npos) << c.what << ": " << r->body;
    // ... and the next request is served as usual.
    const auto ok = client.Post("/v1/predict", good, "application/octet-stream");
    ASSERT_TRUE(ok) << "after " << c.what;
    EXPECT_EQ(ok->status, 200) << "after " << c.what << ": " << ok->body;
  }
  // curl's default content type for --data-binary is a form; the body is still an image.
  const auto as_form = client.Post("/v1/predict", good, "application/x-www-form-urlencoded");
  ASSERT_TRUE(as_form);
  EXPECT_EQ(as_form->status, 200) << as_form->body;
  const auto missing = client.Get("/v2/predict");
  EXPECT_EQ(missing->status, 404);
  EXPECT_MATCHES_SCHEMA(body_of(missing), "Error");
}

TEST_F(Serve, MultipartScoresEachFileAndNamesTheBadOnesInPlace) {
  ft::Running server(options, {});
  auto client = server.client();
  httplib::MultipartFormDataItems items = {
      {"file", util::read_file(paths[1]), "first.png", "image/png"},
      {"file", "not an image", "notes.txt", "text/plain"},
      {"file", util::read_file(paths[2]), "second.jpg", "image/jpeg"},
  };
  const auto r = client.Post("/v1/predict", items);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = body_of(r);
  EXPECT_MATCHES_SCHEMA(j, "Predictions");
  ASSERT_EQ(j["predictions"].size(), 3u);
  EXPECT_EQ(j["predictions"][0]["path"], "first.png");
  EXPECT_EQ(j["predictions"][1]["path"], "notes.txt");
  EXPECT_EQ(j["predictions"][1]["status"], 415);
  EXPECT_NE(j["predictions"][1]["error"].get<std::string>().find("notes.txt"), std::string::npos);
  EXPECT_EQ(j["predictions"][2]["path"], "second.jpg");
  const auto single = body_of(client.Post("/v1/predict", util::read_file(paths[2]), "image/jpeg"));
  EXPECT_NEAR(j["predictions"][2]["probability"].get<double>(), single["probability"].get<double>(), 1e-5);
}

TEST_F(Serve, HeatMapComesAsPngsWithItsStrongestCell) {
  ft::Running server(options, {});
  auto client = server.client();
  const auto r = client.Post("/v1/predict?cam=1&name=x.jpg", util::read_file(paths[0]), "image/jpeg");
  ASSERT_EQ(r->status, 200) << r->body;
  const auto j = body_of(r);
  EXPECT_MATCHES_SCHEMA(j, "Prediction");
  EXPECT_EQ(j["cam"]["class"], "fracture");  // a two-class model's maps explain the positive class
  const auto png = [&](const char* field) {
    const auto bytes = serve::base64_decode(j["cam"][field].get<std::string>());
    EXPECT_TRUE(bytes.has_value()) << field;
    return cv::imdecode(std::vector<uchar>(bytes->begin(), bytes->end()), cv::IMREAD_UNCHANGED);
  };
  const cv::Mat overlay = png("overlay_png"), picture = png("picture_png");
  ASSERT_FALSE(overlay.empty());
  ASSERT_FALSE(picture.empty());
  EXPECT_EQ(overlay.size(), picture.size());
  EXPECT_EQ(overlay.size(), cv::Size(80, 100));  // the upload's own size (up to 1024 px), not the network's 64 px
}

TEST_F(Serve, EveryEndpointAnswersAsTheOpenApiFileSays) {
  std::ofstream(dir / "served.md") << "# A card\n";
  serve::ServerOptions s;
  s.model_card = util::model_card_path(model);
  ft::Running server(options, s);
  auto client = server.client();
  const auto description = body_of(client.Get("/openapi.json"));
  EXPECT_EQ(description, json::parse(util::read_file(FRACTURE_SOURCE_DIR "/docs/openapi.json")));  // the file, served
  const auto m = body_of(client.Get("/v1/model"));
  EXPECT_MATCHES_SCHEMA(m, "Model");
  EXPECT_EQ(m["card"], "# A card\n");
  EXPECT_EQ(m["classes"], json::array({"normal", "fracture"}));
  EXPECT_EQ(m["sha256"], server.predictor.sha256());
  for (const char* path : {"/healthz", "/readyz"}) {
    const auto r = client.Get(path);
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_MATCHES_SCHEMA(body_of(r), "Status");
  }
  const auto p = client.Post("/v1/predict", util::read_file(paths[3]), "image/png");
  EXPECT_MATCHES_SCHEMA(body_of(p), "Prediction");
  // Every path the description names is served.
  for (const auto& [path, item] : description["paths"].items()) {
    const auto r = item.contains("get") ? client.Get(path.c_str()) : client.Post(path.c_str(), "", "image/png");
    EXPECT_NE(r->status, 404) << path;
  }
}

TEST_F(Serve, AFullQueueGets503WithRetryAfterAndADeadlineIsKept) {
  serve::ServerOptions s;
  s.max_batch = 2;
  s.queue = 2;
  s.batch_wait_ms = 3000;  // a lone image waits this long for a partner: the queue holds it meanwhile
  ft::Running server(options, s);
  auto first = std::async(std::launch::async, [&] {
    return server.client().Post("/v1/predict", util::read_file(paths[0]), "image/jpeg")->status;
  });
  auto client = server.client();
  for (int i = 0; i < 1000 && metric(client.Get("/metrics")->body, "fracture_queue_depth") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  httplib::MultipartFormDataItems two = {{"a", util::read_file(paths[1]), "a.png", "image/png"},
                                         {"b", util::read_file(paths[3]), "b.png", "image/png"}};
  const auto refused = client.Post("/v1/predict", two);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_EQ(refused->get_header_value("Retry-After"), "1");
  EXPECT_EQ(body_of(refused)["error"], "queue_full");
  EXPECT_EQ(first.get(), 200);  // the queued one is still answered

  serve::ServerOptions hurried;
  hurried.batch_wait_ms = 300;
  hurried.timeout_ms = 50;  // shorter than the batch wait: the image expires in the queue
  ft::Running late(options, hurried);
  const auto r = late.client().Post("/v1/predict", util::read_file(paths[0]), "image/jpeg");
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(body_of(r)["error"], "deadline_exceeded");
  EXPECT_MATCHES_SCHEMA(body_of(r), "Error");
}

TEST_F(Serve, AnApiKeyGuardsTheApiAndNonLoopbackNeedsOne) {
  serve::ServerOptions open_to_all;
  open_to_all.host = "0.0.0.0";
  EXPECT_THROW(serve::validate(open_to_all), std::invalid_argument);
  open_to_all.api_key = "s3cret";
  EXPECT_NO_THROW(serve::validate(open_to_all));
  EXPECT_TRUE(serve::is_loopback("127.0.0.1"));
  EXPECT_TRUE(serve::is_loopback("localhost"));
  EXPECT_FALSE(serve::is_loopback("192.168.1.5"));

  serve::ServerOptions s;
  s.api_key = "s3cret";
  ft::Running server(options, s);
  auto client = server.client();
  const auto denied = client.Get("/v1/model");
  EXPECT_EQ(denied->status, 401);
  EXPECT_EQ(denied->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_MATCHES_SCHEMA(body_of(denied), "Error");
  EXPECT_EQ(client.Get("/metrics")->status, 401);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "Bearer wrong"}})->status, 401);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "Bearer s3cret"}})->status, 200);
  // The scheme's name is case-insensitive (RFC 7235); the key is not.
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "bearer s3cret"}})->status, 200);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "BEARER  s3cret "}})->status, 200);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "Bearer S3CRET"}})->status, 401);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "Basic s3cret"}})->status, 401);
  EXPECT_EQ(client.Get("/v1/model", {{"Authorization", "s3cret"}})->status, 401);
  EXPECT_EQ(client.Get("/healthz")->status, 200);  // probes and the page stay open
  EXPECT_EQ(client.Get("/")->status, 200);
  EXPECT_FALSE(denied->has_header("Access-Control-Allow-Origin"));  // no CORS unless asked
}

TEST_F(Serve, CorsOnlyForTheOriginGiven) {
  serve::ServerOptions s;
  s.cors_origin = "https://pacs.example.org";
  ft::Running server(options, s);
  auto client = server.client();
  EXPECT_EQ(client.Get("/healthz")->get_header_value("Access-Control-Allow-Origin"), "https://pacs.example.org");
  const auto preflight = client.Options("/v1/predict");
  EXPECT_EQ(preflight->status, 204);
  EXPECT_NE(preflight->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
}

TEST_F(Serve, ThePageIsServedWholeAndAsksForNothingElsewhere) {
  ft::Running server(options, {});
  const auto r = server.client().Get("/");
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(r->body.find("Research use only - not a medical device"), std::string::npos);
  EXPECT_EQ(std::regex_search(r->body, std::regex("(src|href)=\"(https?:)?//")), false) << "an outside resource";
  EXPECT_EQ(r->body.find("https://"), std::string::npos);
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'self'"), std::string::npos);
}

TEST_F(Serve, StopAnswersTheRequestsInFlight) {
  serve::ServerOptions s;
  s.batch_wait_ms = 600;  // the request is still queued when the stop comes
  s.max_batch = 4;
  auto server = std::make_unique<ft::Running>(options, s);
  auto in_flight = std::async(std::launch::async, [&] {
    return server->client().Post("/v1/predict", util::read_file(paths[0]), "image/jpeg");
  });
  auto client = server->client();
  for (int i = 0; i < 1000 && metric(client.Get("/metrics")->body, "fracture_queue_depth") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server->server.stop();
  const auto r = in_flight.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  server.reset();  // run() has returned
  httplib::Client after("127.0.0.1", s.port);
  after.set_connection_timeout(1);
  EXPECT_FALSE(after.Get("/healthz"));  // no longer listening
}

TEST_F(Serve, SigtermStopsTheCommandAfterAnsweringInFlightRequests) {
  const std::string log = dir / "serve.log";
  util::write_file_atomic(log, "");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND);
    ::dup2(fd, 2);
    ::execl(FRACTURE_CLI, FRACTURE_CLI, "serve", "-m", model.c_str(), "--port", "0", "--batch-wait-ms", "600",
            static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  const std::regex listening("http://127\\.0\\.0\\.1:([0-9]+)/");
  for (int i = 0; i < 600 && port == 0; ++i) {
    std::smatch m;
    const std::string text = util::read_file(log);
    if (std::regex_search(text, m, listening)) port = std::stoi(m[1]);
    else std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(port, 0) << util::read_file(log);
  auto in_flight = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30);
    return c.Post("/v1/predict", util::read_file(paths[0]), "image/jpeg");
  });
  httplib::Client probe("127.0.0.1", port);
  for (int i = 0; i < 1000 && metric(probe.Get("/metrics")->body, "fracture_queue_depth") < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(pid, SIGTERM);
  const auto r = in_flight.get();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << util::read_file(log);  // interrupted, as the README says
  EXPECT_NE(util::read_file(log).find("stopped"), std::string::npos) << util::read_file(log);
}
