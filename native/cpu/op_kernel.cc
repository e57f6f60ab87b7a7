// The table of non-convolution ops and their variants.
#include "cpu/op_kernel.h"

#include <cmath>

#include "core/error.h"

namespace stepscope {

namespace {

struct OpEntry {
  const char* op;
  const char* family;
  const char* description;
};

const OpEntry kOps[] = {
    {"batchnorm-fwd", "batchnorm", "batch norm, training mode: batch statistics, running statistics update; relu=1 fuses the ReLU"},
    {"batchnorm-bwd", "batchnorm", "batch norm backward: dx, dgamma, dbeta; relu=1 masks dy by the fused ReLU's output"},
    {"relu-fwd", "eltwise", "y = max(x, 0)"},
    {"relu-bwd", "eltwise", "dx = dy where y > 0"},
    {"add", "eltwise", "y = a + b (residual add, gradient accumulation); relu=1 fuses the ReLU"},
    {"maxpool-fwd", "pool", "max-pool (3x3 stride 2 pad 1 in ResNet-50), saving the argmax"},
    {"maxpool-bwd", "pool", "routes dy to the saved argmax"},
    {"avgpool-fwd", "pool", "global average pool"},
    {"avgpool-bwd", "pool", "spreads dy evenly"},
    {"fc-fwd", "linear", "y = x w^T + b"},
    {"fc-bwd", "linear", "dx = dy w, dw = dy^T x, db = sum dy"},
    {"softmax-xent", "loss", "mean softmax cross-entropy over the batch and its gradient"},
    {"sgd", "sgd", "SGD with momentum and weight decay (PyTorch semantics)"},
    {"allreduce-local", "comm", "local communicator: W-1 stand-in gradients copied in, all W summed and averaged"},
    {"link-hold", "comm", "holds the stream for the modeled ring all-reduce transfer time of a bucket"},
};

}  // namespace

std::vector<OpVariantInfo> cpuOpVariants() {
  std::vector<OpVariantInfo> out;
  for (const auto& e : kOps) {
    out.push_back({e.op, "reference", std::string(e.description) + " (plain loops, double accumulation: the oracle)"});
    out.push_back({e.op, "fast", std::string(e.description) + " (vectorized, threaded)"});
  }
  return out;
}

std::unique_ptr<OpKernel> makeCpuOpKernel(const std::string& op, const std::string& variant, const OpParams& params,
                                          const std::string& layer) {
  std::string names;
  for (const auto& e : kOps) {
    names += (names.empty() ? "" : ", ") + std::string(e.op);
    if (op != e.op) continue;
    if (variant != "reference" && variant != "fast") {
      throw Error("ERR_UNKNOWN_VARIANT", "unknown " + op + " variant '" + variant + "': allowed reference, fast");
    }
    if (params.flag("nhwc")) throw Error("ERR_UNSUPPORTED", op + ": the CPU backend's ops take NCHW or nChw16c, not NHWC (nhwc=1 is the CUDA backend's)");
    const bool fast = variant == "fast";
    const std::string family = e.family;
    if (family == "batchnorm") return makeBatchNorm(op, fast, params, layer);
    if (family == "eltwise") return makeEltwise(op, fast, params, layer);
    if (family == "pool") return makePool(op, fast, params, layer);
    if (family == "linear") return makeLinear(op, fast, params, layer);
    if (family == "loss") return makeLoss(op, fast, params, layer);
    if (family == "comm") return makeComm(op, fast, params, layer);
    return makeSgd(op, fast, params, layer);
  }
  throw Error("ERR_UNKNOWN_OP", "unknown op '" + op + "': allowed conv (ConvKernel), " + names);
}

}  // namespace stepscope
