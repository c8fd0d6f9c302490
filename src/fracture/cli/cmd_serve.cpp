#include <malloc.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <thread>

#include "fracture/cli/commands.h"
#include "fracture/cli/exit_codes.h"
#include "fracture/cli/inference_flags.h"
#include "fracture/serve/server.h"
#include "fracture/util/paths.h"

namespace fracture::cli {
namespace {

std::atomic<bool> g_stop_serving{false};
// The first signal stops the server (in-flight requests answered, requests
// still arriving cut after a grace of seconds); a second quits at once.
extern "C" void on_serve_signal(int) {
  if (g_stop_serving) std::_Exit(kExitInterrupted);
  g_stop_serving = true;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "HTTP API and web page for a model: POST images, get probabilities and heat maps");
  struct Args : InferenceFlags {
    serve::ServerOptions server;
    std::string card;
  };
  auto a = std::make_shared<Args>();
  add_inference_flags(cmd, *a);
  // Batches are the server's own (--max-batch); --batch-size sizes predict's file loading only.
  cmd->remove_option(cmd->get_option("--batch-size"));
  auto& s = a->server;
  cmd->add_option("--host", s.host, "Address to listen on (one other machines can reach needs --api-key)")->capture_default_str();
  cmd->add_option("--port", s.port, "Port (0: any free port, printed on stderr)")->capture_default_str();
  cmd->add_option("--max-batch", s.max_batch, "Images scored together in one forward pass")->capture_default_str();
  cmd->add_option("--batch-wait-ms", s.batch_wait_ms, "How long a first image waits for others to join its batch")
      ->capture_default_str();
  cmd->add_option("--max-body-mb", s.max_body_mb, "Larger requests are refused (413)")->capture_default_str();
  cmd->add_option("--queue", s.queue, "Images waiting for the network; past it requests get 503 and Retry-After")
      ->capture_default_str();
  cmd->add_option("--threads", s.threads, "Connections served at once, each on a thread started as needed (images are decoded on these)")
      ->capture_default_str();
  cmd->add_option("--max-client-connections", s.max_client_connections,
                  "Connections one client address may hold at once; more get 503 at once (0: half of --threads; "
                  "behind a proxy every client has its address: set it to --threads)")
      ->capture_default_str();
  cmd->add_option("--timeout-ms", s.timeout_ms, "A request's deadline: images not scored by then get 503")
      ->capture_default_str();
  cmd->add_option("--api-key", s.api_key,
                  "Require 'Authorization: Bearer KEY' on /v1/* and /metrics (needed for a non-loopback --host)");
  cmd->add_option("--cors", s.cors_origin, "Allow this origin to call the API from a browser (no CORS otherwise)");
  cmd->add_option("--card", a->card, "Model card (Markdown) for /v1/model (default: the card beside the model file)");
  cmd->footer(
      "Endpoints: POST /v1/predict (an image's bytes, or multipart files; ?cam=1 adds heat maps),\n"
      "GET /v1/model, /healthz, /readyz, /metrics (Prometheus), /openapi.json, and / (the web page).\n"
      "Logs go to standard error; SIGTERM or Ctrl-C stops taking connections and answers those in flight\n"
      "(exit status 130); requests still arriving are cut after 2 s, and a second signal quits at once.\n"
      "Research use only - not a medical device. See docs/api.md and docs/serving.md.\n\n"
      "Examples:\n"
      "  fracture serve                                   # the built-in model on http://127.0.0.1:8080/\n"
      "  curl --data-binary @IMG0001.jpg http://127.0.0.1:8080/v1/predict\n"
      "  fracture serve -m bone-types --port 8081\n"
      "  fracture serve --host 0.0.0.0 --api-key \"$(cat key.txt)\"   # behind a TLS proxy");
  cmd->callback([a] {
    a->server.decoders = a->workers;
    serve::validate(a->server);  // before the model loads: a bad flag fails at once
    // Connection threads each free image-sized buffers; glibc gives each
    // thread its own arena (up to 8 per core), and those kept growing under
    // load (+18% RSS in a 10-minute soak). Two arenas kept it flat at the
    // same speed; a fixed mmap threshold did too, at a quarter of the speed
    // (docs/serving.md). Set before any thread starts.
    mallopt(M_ARENA_MAX, 2);
    // Before the model loads, so that a stop while it loads is not lost.
    g_stop_serving = false;
    std::signal(SIGINT, on_serve_signal);
    std::signal(SIGTERM, on_serve_signal);
    Predictor predictor(predictor_options(*a));
    a->server.model_card = a->card.empty() ? util::model_card_path(predictor.model_path()) : a->card;
    serve::Server server(predictor, a->server);
    const int port = server.bind();
    // The signal only sets a flag; this thread turns it into a stop, which
    // is not safe to call from a signal handler.
    std::atomic<bool> served{false};
    std::thread watcher([&] {
      bool told = false;
      while (!served) {
        if (g_stop_serving) {  // repeated: a stop that came before listening began is not lost
          if (!told) spdlog::info("stopping: answering the requests in flight");
          told = true;
          server.stop();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    spdlog::info("serving {} ({} classes; {}) on http://{}:{}/ - research use only, not a medical device",
                 predictor.model_name(), predictor.classes().size(), predictor.engine(), a->server.host, port);
    server.run();
    served = true;
    watcher.join();
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    spdlog::info("stopped");
    if (g_stop_serving) throw CLI::RuntimeError(kExitInterrupted);  // as every command stopped by a signal
  });
}

}  // namespace fracture::cli
