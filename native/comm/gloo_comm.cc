#include "comm/gloo_comm.h"

#include "core/error.h"

#ifdef STEPSCOPE_HAVE_GLOO
#include <gloo/allreduce.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>

#include <memory>

#include "comm/tcp_store.h"
#include <gloo/transport/tcp/device.h>
#endif

namespace stepscope {

#ifdef STEPSCOPE_HAVE_GLOO

bool GlooCommunicator::available() { return true; }

void GlooCommunicator::connect() {
  const auto& o = options_;
  try {
    gloo::transport::tcp::attr attr(o.hostname.c_str());
    auto device = gloo::transport::tcp::CreateDevice(attr);
    std::unique_ptr<gloo::rendezvous::Store> base;
    if (!o.storePath.empty()) {
      base = std::make_unique<gloo::rendezvous::FileStore>(o.storePath);
    } else {
      if (o.rank == 0) startTcpStoreServer(o.storePort);
      base = std::make_unique<TcpStoreClient>(o.storeHost, o.storePort, std::chrono::milliseconds(o.timeoutMs));
    }
    gloo::rendezvous::PrefixStore store(o.storePrefix, *base);
    auto context = std::make_shared<gloo::rendezvous::Context>(o.rank, o.size);
    context->setTimeout(std::chrono::milliseconds(o.timeoutMs));
    context->connectFullMesh(store, device);
    context_ = context;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string where = o.storePath.empty() ? "tcp store " + o.storeHost + ":" + std::to_string(o.storePort) : "store " + o.storePath;
    throw Error("ERR_COMM", "gloo rank " + std::to_string(o.rank) + " of " + std::to_string(o.size) +
                                ": rendezvous failed within " + std::to_string(o.timeoutMs) + " ms (" + where +
                                "): " + e.what());
  }
}

// The tag of the n-th all-reduce, of `count` values. It holds the count so that
// ranks that disagree on a size use different tags: each then waits for the
// other until the timeout (ERR_COMM). Under one tag, Gloo's event loop would
// find the size mismatch itself and terminate the process (GLOO_ENFORCE on its
// own thread, where nothing can catch it).
static uint32_t tagFor(uint32_t sequence, size_t count) {
  const uint64_t mixed = ((uint64_t(sequence) << 32) ^ uint64_t(count)) * 0x9E3779B97F4A7C15ull;
  return uint32_t(mixed >> 32);
}

void GlooCommunicator::allreduce(float* data, size_t count, float scale) {
  if (!context_) throw Error("ERR_COMM", "gloo: allreduce before connect()");
  try {
    gloo::AllreduceOptions opts(context_);
    opts.setInput(data, count);
    opts.setOutput(data, count);
    opts.setReduceFunction(static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
    opts.setTag(tagFor(sequence_++, count));
    opts.setTimeout(std::chrono::milliseconds(options_.timeoutMs));
    gloo::allreduce(opts);
  } catch (const std::exception& e) {
    throw Error("ERR_COMM", "gloo rank " + std::to_string(options_.rank) + ": all-reduce of " + std::to_string(count) +
                                " values failed (a peer died, or reduced another number of values, or did not answer within " +
                                std::to_string(options_.timeoutMs) + " ms): " + e.what());
  }
  for (size_t i = 0; i < count; ++i) data[i] *= scale;
}

#else

bool GlooCommunicator::available() { return false; }
void GlooCommunicator::connect() {
  throw Error("ERR_UNAVAILABLE", "the gloo communicator is unavailable: the addon was built without Gloo (apt-get install libgloo-dev)");
}
void GlooCommunicator::allreduce(float*, size_t, float) { connect(); }

#endif

}  // namespace stepscope
