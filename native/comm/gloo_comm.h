// The `gloo` communicator: real multi-process all-reduce across CPU processes
// with Gloo (Debian's libgloo-dev), TCP transport. Rendezvous through a
// FileStore directory shared by the ranks (what stepscope launch makes on one
// machine) or through a TCP store served by rank 0 at MASTER_ADDR:MASTER_PORT
// (across machines, as torchrun does).
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace gloo {
class Context;
}

namespace stepscope {

struct GlooOptions {
  int rank = 0;
  int size = 1;
  std::string storePath;      // FileStore directory; empty: the TCP store
  std::string storeHost;      // TCP store: MASTER_ADDR
  int storePort = 0;          // TCP store: MASTER_PORT (rank 0 serves it)
  std::string storePrefix;    // keeps rendezvous of one process apart
  std::string hostname = "127.0.0.1";
  int timeoutMs = 30000;      // rendezvous and every collective
};

class GlooCommunicator {
 public:
  explicit GlooCommunicator(GlooOptions options) : options_(std::move(options)) {}
  // Blocking: rendezvous with every other rank (throws ERR_COMM on timeout).
  void connect();
  // In place: data = scale * sum over ranks of data. Throws ERR_COMM.
  void allreduce(float* data, size_t count, float scale);
  const GlooOptions& options() const { return options_; }
  static bool available();

 private:
  GlooOptions options_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t sequence_ = 0;  // all-reduces so far (with the count, their tag)
};

using GlooPtr = std::shared_ptr<GlooCommunicator>;

}  // namespace stepscope
