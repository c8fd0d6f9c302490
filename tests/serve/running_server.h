#pragma once
// A `fracture serve` server on its own thread, on an ephemeral loopback
// port, for the length of a test.
#include <httplib.h>

#include <thread>

#include "fracture/serve/server.h"

namespace fracture::testing {

// A server on its own thread for the length of a test.
struct Running {
  Predictor predictor;
  serve::Server server;
  int port;
  std::thread thread;
  Running(PredictorOptions p, serve::ServerOptions s)
      : predictor(std::move(p)), server(predictor, with_any_port(s)), port(server.bind()),
        thread([this] { server.run(); }) {}
  ~Running() {
    server.stop();
    thread.join();
  }
  static serve::ServerOptions with_any_port(serve::ServerOptions s) {
    s.port = 0;
    return s;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60);
    return c;
  }
};

}  // namespace fracture::testing
