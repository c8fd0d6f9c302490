#pragma once
// `fracture serve`: the Predictor behind an HTTP API and a web page (one
// binary, cpp-httplib). Endpoints (docs/api.md, docs/openapi.json):
//   POST /v1/predict      one image's bytes, or multipart with several; ?cam=1 adds heat maps
//   GET  /v1/model        architecture, classes, threshold, input, sha256, card
//   GET  /healthz         alive;  GET /readyz  model loaded and taking work
//   GET  /metrics         Prometheus text;  GET /openapi.json;  GET /  the page
// Research use only - not a medical device.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "fracture/predictor.h"

namespace fracture::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see bind)
  int max_batch = 8;  // images per forward pass
  int batch_wait_ms = 5;  // how long a first image waits for others to join its batch
  int max_body_mb = 64;  // larger requests: 413
  int queue = 64;  // images waiting for the network; past it: 503 with Retry-After
  // Connections handled at once, each on its own thread (started as needed);
  // more wait for a free one. One client address may hold at most
  // max_client_connections of them (0: half of threads): behind a proxy,
  // where every client has the proxy's address, set it to threads.
  int threads = 128;
  int max_client_connections = 0;
  // Each request must arrive, headers and body, within request_grace_s plus
  // a second per min_bytes_per_s bytes (a trickling client is cut off); on
  // stop, requests still arriving get stop_grace_s (serve/connections.h).
  double request_grace_s = 10, min_bytes_per_s = 1000, stop_grace_s = 2;
  // Images decoded at once (on the connection threads). As many as predict's
  // loader workers: more would fight the forward pass for the cores.
  int decoders = 2;
  int timeout_ms = 30000;  // a request's deadline: 503 if its images were not scored by then
  std::string api_key;  // required (Bearer) on /v1/* and /metrics when not empty
  std::string cors_origin;  // Access-Control-Allow-Origin; "" for none
  std::string model_card;  // a Markdown file served in /v1/model; "" for none
};

// Whether a host name or address is this machine only.
bool is_loopback(const std::string& host);
// Throws std::invalid_argument naming the option and the problem: limits out
// of range, or a non-loopback host without an API key.
void validate(const ServerOptions& options);

class Server {
 public:
  Server(Predictor& predictor, ServerOptions options);  // validates the options
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the port; returns it (the chosen one when the port is 0). Throws
  // when the address cannot be bound.
  int bind();
  // Serves until stop(); in-flight requests are answered before it returns.
  void run();
  // Stops taking connections; safe from any thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fracture::serve
