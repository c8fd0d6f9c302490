// Clients that try to take the server down (issue 38), against a real
// server on loopback: a chunked upload past the body limit, slow clients
// holding connections, a trickling request, a stop with a slow client
// connected, lengths that are no byte counts, more images than the queue.
// Each bounded in time; slow clients come from 127.0.0.2, normal ones from
// 127.0.0.1, so that the per-address cap is what is tested.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "fracture/util/atomic_file.h"
#include "helpers.h"
#include "serve/running_server.h"
#include "small_model.h"

namespace ft = fracture::testing;
using namespace fracture;
using Clock = std::chrono::steady_clock;

namespace {

// A raw TCP connection from a chosen loopback address.
class RawClient {
 public:
  RawClient(const std::string& from, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from.c_str(), &local.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) throw std::runtime_error("bind " + from);
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &server.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) throw std::runtime_error("connect");
  }
  ~RawClient() { ::close(fd_); }
  bool send(const std::string& bytes) { return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()); }
  // What the server sent within `ms` (until it closed, or the time ran out).
  std::string receive(int ms) {
    std::string got;
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      pollfd p{fd_, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return got;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return got + (n == 0 ? "<closed>" : "<reset>");
      got.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
};

// A client sending a request a byte every `gap` until told to stop or cut off.
struct Trickler {
  std::atomic<bool> stop{false}, cut{false};
  std::thread thread;
  Trickler(const std::string& from, int port, std::chrono::milliseconds gap) {
    thread = std::thread([this, from, port, gap] {
      try {
        RawClient c(from, port);
        const std::string request = "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'x');
        for (char byte : request) {
          if (stop) return;
          if (!c.send(std::string(1, byte))) break;
          const std::string answer = c.receive(static_cast<int>(gap.count()));
          if (!answer.empty()) break;  // answered (503) or closed
        }
      } catch (const std::exception&) {
      }
      cut = true;
    });
  }
  ~Trickler() {
    stop = true;
    thread.join();
  }
};

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    options.model = ft::save_small_model(dir / "served.safetensors", {"normal", "fracture"}, 0.4, 5);
    image = dir / "xray.png";
    ft::write_image(image, ft::synthetic_xray(90, 110, 3, true));
  }
  double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
  ft::TempDir dir;
  PredictorOptions options;
  std::string image;
};

}  // namespace

TEST_F(Hostile, AChunkedUploadPastTheLimitGets413) {
  serve::ServerOptions s;
  s.max_body_mb = 1;
  ft::Running server(options, s);
  auto client = server.client();
  size_t sent = 0;
  const std::string chunk(64 << 10, 'x');
  const auto r = client.Post(
      "/v1/predict",
      [&](size_t, httplib::DataSink& sink) {
        if (sent >= (4u << 20)) {
          sink.done();
          return true;
        }
        sent += chunk.size();
        return sink.write(chunk.data(), chunk.size());
      },
      "image/jpeg");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"], "too_large") << r->body;
  EXPECT_EQ(server.client().Get("/healthz")->status, 200);  // and it keeps serving
}

TEST_F(Hostile, SlowClientsCannotTakeEveryThread) {
  serve::ServerOptions s;
  s.threads = 8;
  s.max_client_connections = 4;
  ft::Running server(options, s);
  std::vector<std::unique_ptr<Trickler>> slow;
  for (int i = 0; i < 9; ++i)  // one more than the threads
    slow.push_back(std::make_unique<Trickler>("127.0.0.2", server.port, std::chrono::milliseconds(500)));
  int refused = 0;  // past the address's 4: answered 503 at once (waited for, on a loaded machine)
  for (int i = 0; i < 100 && refused < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    refused = 0;
    for (auto& t : slow) refused += t->cut ? 1 : 0;
  }
  EXPECT_EQ(refused, 5);
  const auto start = Clock::now();
  auto client = server.client();
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  const auto r = client.Post("/v1/predict", util::read_file(image), "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_LT(seconds_since(start), 5.0);  // not after the slow ones' deadline
  RawClient over("127.0.0.2", server.port);  // a whole request sent at once still reads its 503
  over.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(over.receive(2000).find("too_many_connections"), std::string::npos);
}

TEST_F(Hostile, ATricklingRequestIsCutAtItsDeadline) {
  serve::ServerOptions s;
  s.request_grace_s = 1;
  ft::Running server(options, s);
  const auto start = Clock::now();
  Trickler slow("127.0.0.2", server.port, std::chrono::milliseconds(100));
  for (int i = 0; i < 100 && !slow.cut; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(slow.cut);
  EXPECT_LT(seconds_since(start), 4.0);  // 1 s, plus 10 bytes' worth of 1000 B/s, plus slack
  // A request that arrives at once is not cut.
  EXPECT_EQ(server.client().Post("/v1/predict", util::read_file(image), "image/png")->status, 200);
}

TEST_F(Hostile, AStopIsBoundedWithASlowClientConnected) {
  serve::ServerOptions s;
  s.stop_grace_s = 0.5;
  auto server = std::make_unique<ft::Running>(options, s);
  Trickler slow("127.0.0.2", server->port, std::chrono::milliseconds(300));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto start = Clock::now();
  server.reset();  // stop() and join: run() has returned
  EXPECT_LT(seconds_since(start), 3.0);
}

TEST_F(Hostile, LengthsThatAreNoByteCountsAreAnsweredAtOnce) {
  ft::Running server(options, {});
  for (const auto& [length, status] : {std::pair{"-5", "400"}, std::pair{"100000000000000000000000", "413"},
                                       std::pair{"68719476736", "413"}, std::pair{"12abc", "400"}}) {
    RawClient c("127.0.0.1", server.port);
    const auto start = Clock::now();
    c.send(std::string("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: ") + length + "\r\n\r\n");
    const std::string answer = c.receive(5000);
    EXPECT_EQ(answer.rfind(std::string("HTTP/1.1 ") + status, 0), 0u) << length << ": " << answer;
    EXPECT_LT(seconds_since(start), 2.0) << length;
  }
}

TEST_F(Hostile, MoreImagesThanTheQueueGet413NotARetryThatCannotWork) {
  serve::ServerOptions s;
  s.queue = 4;
  ft::Running server(options, s);
  httplib::MultipartFormDataItems files;
  for (int i = 0; i < 5; ++i)
    files.push_back({"f" + std::to_string(i), util::read_file(image), "x" + std::to_string(i) + ".png", "image/png"});
  const auto r = server.client().Post("/v1/predict", files);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"], "too_many_images");
  EXPECT_FALSE(r->has_header("Retry-After"));
  files.pop_back();
  EXPECT_EQ(server.client().Post("/v1/predict", files)->status, 200);  // as many as the queue: scored
}
