#include "fracture/serve/server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <stdexcept>

#include "fracture/serve/base64.h"
#include "fracture/serve/batcher.h"
#include "fracture/serve/connections.h"
#include "fracture/serve/metrics.h"
#include "fracture/train/checkpoint.h"
#include "fracture/util/atomic_file.h"

namespace fracture::serve {

// Embedded at build time (serve_assets.cpp, from page.html and docs/openapi.json).
extern const char* const kPageHtml;
extern const char* const kOpenApiJson;

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

// A request that cannot be answered with a prediction: its status, a short
// code a program can test, and a sentence naming the input and the problem.
struct HttpError {
  int status;
  std::string error, detail;
};

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, const HttpError& e) {
  send_json(res, e.status, {{"error", e.error}, {"detail", e.detail}});
}

HttpError error_of(const data::ImageError& e) {
  using Kind = data::ImageError::Kind;
  switch (e.kind()) {
    case Kind::Empty: return {400, "empty_body", e.what()};
    case Kind::NotAnImage: return {415, "not_an_image", e.what()};
    case Kind::TooLarge: return {413, "too_large", e.what()};
    case Kind::Unsupported: return {415, "unsupported_image", e.what()};
    case Kind::Unreadable: return {400, "unreadable", e.what()};
    case Kind::Corrupt: break;
  }
  return {422, "corrupt_image", e.what()};
}

// Compares without stopping at the first difference, so that the time taken
// does not tell an attacker how much of a guessed key was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

// The token of an 'Authorization: Bearer TOKEN' header; the scheme's name
// is case-insensitive (RFC 7235). "" for any other header.
std::string bearer_token(const std::string& header) {
  const auto space = header.find(' ');
  if (space != 6) return "";
  std::string scheme = header.substr(0, space);
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (scheme != "bearer") return "";
  const auto start = header.find_first_not_of(' ', space);
  const auto end = header.find_last_not_of(' ');
  return start == std::string::npos ? "" : header.substr(start, end - start + 1);
}

// Routes by name for the metrics: a fixed set, whatever paths clients send.
std::string route_of(const httplib::Request& req) {
  for (const char* known : {"/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json", "/"})
    if (req.path == known) return known;
  return "other";
}

bool wants(const httplib::Request& req, const std::string& param) {
  const auto v = req.get_param_value(param);
  return v == "1" || v == "true" || v == "yes";
}

std::string png_of(const cv::Mat& image) {
  std::vector<uchar> png;
  cv::imencode(".png", image, png);
  return std::string(png.begin(), png.end());
}

// At most N holders at once (C++17 has no std::counting_semaphore).
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    freed_.wait(lock, [&] { return free_ > 0; });
    --free_;
  }
  void release() {
    { std::lock_guard<std::mutex> lock(mu_); ++free_; }
    freed_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable freed_;
  int free_;
};

// The time a request arrived, per connection thread: set before routing,
// read when the answer is logged (both run on the thread serving it).
thread_local Clock::time_point request_start;

}  // namespace

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

void validate(const ServerOptions& o) {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
  };
  check(o.port >= 0 && o.port <= 65535, "--port must be 0-65535");
  check(o.max_batch >= 1 && o.max_batch <= 256, "--max-batch must be 1-256");
  check(o.batch_wait_ms >= 0 && o.batch_wait_ms <= 10000, "--batch-wait-ms must be 0-10000");
  check(o.max_body_mb >= 1 && o.max_body_mb <= 4096, "--max-body-mb must be 1-4096");
  check(o.queue >= 1 && o.queue <= 100000, "--queue must be 1-100000");
  check(o.threads >= 1 && o.threads <= 4096, "--threads must be 1-4096");
  check(o.max_client_connections >= 0 && o.max_client_connections <= o.threads,
        "--max-client-connections must be 0 (half of --threads) to --threads");
  check(std::isfinite(o.request_grace_s) && o.request_grace_s > 0 && std::isfinite(o.min_bytes_per_s) &&
            o.min_bytes_per_s > 0 && std::isfinite(o.stop_grace_s) && o.stop_grace_s >= 0,
        "request deadlines must be positive numbers");
  check(o.decoders >= 1 && o.decoders <= 256, "--workers must be 1-256");
  check(o.timeout_ms >= 1, "--timeout-ms must be at least 1");
  check(!o.host.empty(), "--host must not be empty");
  check(is_loopback(o.host) || !o.api_key.empty(),
        "--host " + o.host + " accepts connections from other machines: give --api-key (clients send it as "
        "'Authorization: Bearer KEY'), and put TLS in front (docs/serving.md)");
}

struct Server::Impl {
  Predictor& predictor;
  ServerOptions options;
  Metrics metrics;
  Batcher batcher;
  GuardedServer http;
  std::atomic<bool> ready{false};
  json model_description;
  socket_t listening_socket = INVALID_SOCKET;
  Slots decoding{1};
  std::atomic<uint64_t> refused{0};

  Impl(Predictor& p, ServerOptions o)
      : predictor(p), options(std::move(o)),
        batcher([this](const std::vector<PreparedImage>& images) { return predictor.score(images); },
                {static_cast<size_t>(options.max_batch), std::chrono::milliseconds(options.batch_wait_ms),
                 static_cast<size_t>(options.queue)},
                [this](size_t n) { metrics.batch(n); }),
        http(connection_limits(options)), model_description(describe_model()), decoding(options.decoders) {
    cv::setNumThreads(1);  // the decoding slots are the parallelism; OpenCV's own pool would oversubscribe
    configure();
    routes();
  }

  static ConnectionLimits connection_limits(const ServerOptions& o) {
    ConnectionLimits l;
    l.threads = o.threads;
    l.per_client = o.max_client_connections;
    l.request_grace_s = o.request_grace_s;
    l.min_bytes_per_s = o.min_bytes_per_s;
    l.stop_grace_s = o.stop_grace_s;
    l.max_request_bytes = (static_cast<size_t>(o.max_body_mb) << 20) + (1u << 20);  // the body and its headers
    return l;
  }

  json describe_model() const {
    const auto& info = predictor.info();
    json j{{"model", predictor.model_name()},
           {"architecture", info.architecture},
           {"networks", info.members},  // more than one: an ensemble, every network run on every image
           {"classes", info.class_names}};
    if (predictor.binary()) {
      j["threshold"] = info.threshold;
      j["threshold_rule"] = info.threshold_rule;
    }
    j["input"] = {{"size", info.preprocess.size},
                  {"resize", train::resize_mode_name(info.preprocess.resize)},
                  {"clahe", info.preprocess.clahe},
                  {"standardise", info.preprocess.standardise},
                  {"mean", info.preprocess.mean},
                  {"std", info.preprocess.std}};
    j["sha256"] = predictor.sha256();
    j["card"] = options.model_card.empty() ? json() : json(util::read_file(options.model_card));
    j["training"] = info.extra;
    j["notice"] = "Research use only - not a medical device.";
    return j;
  }

  void configure() {
    http.on_refused = [this](const std::string& address) {
      // Once, then every 1000th: a client that keeps trying must not flood the log.
      if (refused++ % 1000 == 0)
        spdlog::warn("{}: refused a connection past {} from that address (--max-client-connections; {} refused so far)",
                     address, http.per_client_limit(), refused.load());
    };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_mb) << 20);
    http.set_write_timeout(30);
    http.set_tcp_nodelay(true);
    // cpp-httplib 0.11 listens with a backlog of 5: 32 clients connecting at
    // once then lose connections. The listening socket is noted here and
    // given the system's backlog after binding (see bind()). Only
    // SO_REUSEADDR, not the library's default SO_REUSEPORT, which would let
    // a second server take the same port silently.
    http.set_socket_options([this](socket_t sock) {
      int yes = 1;
      ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listening_socket = sock;
    });
    if (!options.cors_origin.empty())
      http.set_default_headers({{"Access-Control-Allow-Origin", options.cors_origin}, {"Vary", "Origin"}});
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      request_start = Clock::now();
      if (authorised(req, res) && length_acceptable(req, res)) return httplib::Server::HandlerResponse::Unhandled;
      GuardedServer::close_after_response();  // its body, if any, is not read
      return httplib::Server::HandlerResponse::Handled;
    });
    // Errors that cpp-httplib answers itself (404, 413 before reading, 400) get the same JSON shape as ours.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      if (res.status == 404)
        send_error(res, {404, "not_found", req.method + " " + req.path + ": no such endpoint (see /openapi.json)"});
      else if (res.status == 413)
        send_error(res, {413, "too_large", "the request body is larger than the server's limit (--max-body-mb)"});
      else
        send_error(res, {res.status, "bad_request", "the request could not be read (HTTP status " +
                                                        std::to_string(res.status) + ")"});
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      spdlog::error("{} {}: {}", req.method, req.path, what);
      send_error(res, {500, "internal", what});
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double seconds = std::chrono::duration<double>(Clock::now() - request_start).count();
      metrics.request(route_of(req), res.status, seconds);
      spdlog::debug("{} {} {} {:.1f} ms", req.method, req.path, res.status, seconds * 1e3);
    });
  }

  // A declared body length that is no byte count, or over the limit, is
  // answered at once: nothing of such a body is read (cpp-httplib would try
  // to read it all before saying 413).
  bool length_acceptable(const httplib::Request& req, httplib::Response& res) const {
    if (!req.has_header("Content-Length")) return true;
    const std::string value = req.get_header_value("Content-Length");
    const bool digits = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits) {
      send_error(res, {400, "bad_request", "Content-Length '" + value.substr(0, 32) + "' is not a byte count"});
      return false;
    }
    if (value.size() > 12 || std::stoull(value) > (static_cast<uint64_t>(options.max_body_mb) << 20)) {  // 12 digits: over 4096 MB
      send_error(res, {413, "too_large", "the request body (" + value.substr(0, 32) + " bytes) is larger than the server's limit of " +
                                             std::to_string(options.max_body_mb) + " MB (--max-body-mb)"});
      return false;
    }
    return true;
  }

  // The API key, where one is set, guards the API and the metrics; the page,
  // the health checks and the API description stay open (the page asks for the key).
  bool authorised(const httplib::Request& req, httplib::Response& res) const {
    if (options.api_key.empty() || req.method == "OPTIONS") return true;
    if (req.path.rfind("/v1/", 0) != 0 && req.path != "/metrics") return true;
    if (same_secret(bearer_token(req.get_header_value("Authorization")), options.api_key)) return true;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, {401, "unauthorized", "this server needs an API key: send 'Authorization: Bearer KEY'"});
    return false;
  }

  void routes() {
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kPageHtml, "text/html; charset=utf-8");
      // The page loads nothing from elsewhere; the browser is told to enforce that.
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
                     "script-src 'unsafe-inline'");
    });
    http.Get("/openapi.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kOpenApiJson, "application/json");
    });
    http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { send_json(res, 200, {{"status", "alive"}}); });
    http.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
      if (ready) send_json(res, 200, {{"status", "ready"}, {"model", predictor.model_name()}});
      else send_json(res, 503, {{"status", "not ready"}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.prometheus(batcher.depth()), "text/plain; version=0.0.4");
    });
    http.Get("/v1/model", [this](const httplib::Request&, httplib::Response& res) { send_json(res, 200, model_description); });
    http.Post("/v1/predict", [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
      predict(req, res, read);
    });
    if (!options.cors_origin.empty())
      http.Options(".*", [](const httplib::Request&, httplib::Response& res) {
        res.status = 204;
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
      });
  }

  struct Upload {
    std::string name, bytes;
  };

  // The images of a request: the body itself, or each file of a multipart
  // body. Read through a content reader, so that no body is parsed as a form
  // (curl's --data-binary says application/x-www-form-urlencoded). The body
  // is counted against --max-body-mb as it arrives, whatever its framing
  // (cpp-httplib checks only a declared Content-Length), and a multipart
  // body may hold at most --queue images: more could never be taken at once.
  std::vector<Upload> uploads_of(const httplib::Request& req, const httplib::ContentReader& read,
                                 const httplib::Response& res) const {
    const size_t max_bytes = static_cast<size_t>(options.max_body_mb) << 20, max_files = static_cast<size_t>(options.queue);
    std::vector<Upload> out;
    size_t total = 0;
    bool too_large = false, too_many = false;
    auto take = [&](const char* data, size_t size) {
      total += size;
      if (total > max_bytes) return !(too_large = true);
      out.back().bytes.append(data, size);
      return true;
    };
    bool complete = false;
    if (req.is_multipart_form_data()) {
      complete = read(
          [&](const httplib::MultipartFormData& file) {
            if (out.size() >= max_files) return !(too_many = true);
            out.push_back({file.filename.empty() ? file.name : file.filename, ""});
            return true;
          },
          take);
    } else {
      out.push_back({req.has_param("name") ? req.get_param_value("name") : "upload", ""});
      complete = read(take);
    }
    if (!complete) GuardedServer::close_after_response();  // the rest of the body is not read
    if (too_large || res.status == 413)
      throw HttpError{413, "too_large", "the request body is larger than the server's limit of " +
                                            std::to_string(options.max_body_mb) + " MB (--max-body-mb)"};
    if (too_many)
      throw HttpError{413, "too_many_images", "the request holds more than " + std::to_string(max_files) +
                                                  " images, the most the server takes in one request (--queue): "
                                                  "send them in several requests"};
    if (!complete) throw HttpError{400, "bad_request", "the request body could not be read (cut short, or malformed multipart)"};
    if (out.empty()) throw HttpError{400, "empty_body", "the multipart body holds no files"};
    if (!req.is_multipart_form_data() && out.back().bytes.empty())
      throw HttpError{400, "empty_body", "the request has no body: send an image's bytes, or multipart files"};
    return out;
  }

  PreparedImage prepare(const Upload& u) {
    decoding.acquire();
    struct Release {
      Slots& s;
      ~Release() { s.release(); }
    } release{decoding};
    // A JPEG cut off in transfer is refused there: a hospital system should resend it.
    return predictor.prepare(u.bytes, u.name);
  }

  json answer(const Prediction& p, const Upload& u, bool cam) {
    if (!p.ok()) throw HttpError{500, "internal", p.error};
    json j = to_json(p, predictor);
    j["milliseconds"] = p.milliseconds;
    if (cam) {
      const int target = predictor.heat_map_class(p);
      const auto map = predictor.heat_map_of_bytes(u.bytes, u.name, target);
      j["cam"] = {{"class", predictor.classes()[static_cast<size_t>(target)]},
                  {"peak_x", map.peak_x},
                  {"peak_y", map.peak_y},
                  {"overlay_png", base64_encode(png_of(map.overlay))},
                  {"picture_png", base64_encode(png_of(map.picture))}};
    }
    return j;
  }

  void predict(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& read) {
    try {
      const auto deadline = Clock::now() + std::chrono::milliseconds(options.timeout_ms);
      const bool several = req.is_multipart_form_data(), cam = wants(req, "cam");
      const auto uploads = uploads_of(req, read, res);
      // Decoded here, on the connection's thread, so that decoding runs in parallel with the network.
      std::vector<PreparedImage> images;
      std::vector<json> failures(uploads.size());
      std::vector<size_t> scored;  // uploads that were decoded, in order
      for (size_t i = 0; i < uploads.size(); ++i) {
        try {
          images.push_back(prepare(uploads[i]));
          scored.push_back(i);
        } catch (const data::ImageError& e) {
          if (!several) throw error_of(e);
          failures[i] = {{"path", uploads[i].name}, {"error", e.what()}, {"status", error_of(e).status}};
        }
      }
      auto futures = batcher.submit(std::move(images), deadline);
      if (!futures) {
        res.set_header("Retry-After", "1");
        throw HttpError{503, "queue_full",
                        "the server is busy (" + std::to_string(batcher.depth()) + " images waiting): retry shortly"};
      }
      std::vector<json> results = failures;
      for (size_t k = 0; k < futures->size(); ++k) {
        Prediction p;
        try {
          p = (*futures)[k].get();
        } catch (const DeadlineExceeded& e) {
          res.set_header("Retry-After", "1");
          throw HttpError{503, "deadline_exceeded", e.what()};
        }
        results[scored[k]] = answer(p, uploads[scored[k]], cam);
      }
      if (several) send_json(res, 200, {{"predictions", results}});
      else send_json(res, 200, results.front());
    } catch (const HttpError& e) {
      send_error(res, e);
    } catch (const data::ImageError& e) {  // a heat map's decoding
      send_error(res, error_of(e));
    }
  }
};

Server::Server(Predictor& predictor, ServerOptions options) {
  validate(options);
  impl_ = std::make_unique<Impl>(predictor, std::move(options));
}

Server::~Server() = default;

int Server::bind() {
  auto& o = impl_->options;
  const int port = o.port == 0 ? impl_->http.bind_to_any_port(o.host) : (impl_->http.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0)
    throw std::runtime_error("cannot listen on " + o.host + ":" + std::to_string(o.port) +
                             " (in use, or not an address of this machine?)");
  o.port = port;
  if (impl_->listening_socket != INVALID_SOCKET) ::listen(impl_->listening_socket, SOMAXCONN);  // see configure()
  return port;
}

void Server::run() {
  impl_->ready = true;
  impl_->http.listen_after_bind();
  impl_->ready = false;
}

void Server::stop() {
  impl_->ready = false;  // a load balancer sees /readyz fail while in-flight requests finish
  impl_->http.stop_bounded();
}

}  // namespace fracture::serve
