// The table of the CUDA backend's non-convolution ops and the factory.
#include "cuda/op_cuda.h"

#include <cuda_runtime_api.h>

#include "core/error.h"
#include "cuda/cuda_error.h"

namespace stepscope {

std::string CudaOpKernel::context() const { return (layer_.empty() ? op_ : layer_) + " " + pass_ + " " + op_; }

void checkLaunch(const char* what, const std::string& context) { checkCuda(cudaGetLastError(), what, context); }

int opGridFor(long long total) {
  const long long blocks = (total + 255) / 256;
  return int(blocks < 1 ? 1 : blocks < 65535LL * 32 ? blocks : 65535LL * 32);
}

namespace {

struct Entry {
  const char* op;
  const char* description;
};

const Entry kOps[] = {
    {"batchnorm-fwd", "batch norm, training mode, one block per channel (double sums); relu=1 fuses the ReLU"},
    {"batchnorm-bwd", "batch norm backward, one block per channel; relu=1 masks dy by the fused ReLU's output"},
    {"relu-fwd", "y = max(x, 0)"},
    {"relu-bwd", "dx = dy where y > 0"},
    {"add", "y = a + b; relu=1 fuses the ReLU"},
    {"maxpool-fwd", "max-pool saving the argmax"},
    {"maxpool-bwd", "gathers dy at each input from the windows that chose it (no atomics)"},
    {"avgpool-fwd", "global average pool"},
    {"avgpool-bwd", "spreads dy evenly"},
    {"fc-fwd", "y = x w^T + b (cuBLAS sgemm, fp32)"},
    {"fc-bwd", "dx = dy w, dw = dy^T x (cuBLAS sgemm, fp32), db = sum dy"},
    {"softmax-xent", "mean softmax cross-entropy and its gradient; a bad label is ERR_INVALID_ARG at the next synchronize"},
    {"sgd", "SGD with momentum and weight decay (PyTorch semantics)"},
    {"allreduce-local", "local communicator: W-1 stand-in gradients copied in on the device, all W summed and averaged"},
    {"link-hold", "holds the stream for the modeled ring all-reduce time of a bucket (a sleeping host function)"},
    {"input", "x [n, c, hw] fp32 NCHW -> y in the step's layout (nhwc=1) and dtype (bf16=1)"},
};

// Library variants beside our own kernels (variant `cuda`).
const Entry kLibraryOps[] = {
    {"batchnorm-fwd", "cuDNN's batch norm forward, training mode (spatial, legacy API); no fused ReLU"},
    {"batchnorm-bwd", "cuDNN's batch norm backward (spatial, legacy API); no fused ReLU"},
};

}  // namespace

std::vector<OpVariantInfo> cudaOpVariants() {
  std::vector<OpVariantInfo> out;
  for (const Entry& e : kOps) out.push_back({e.op, "cuda", e.description});
  for (const Entry& e : kLibraryOps) out.push_back({e.op, "cudnn", e.description});
  return out;
}

std::unique_ptr<CudaOpKernel> makeCudaOpKernel(const std::string& op, const std::string& variant, const OpParams& p,
                                               const std::string& layer) {
  bool known = false;
  for (const Entry& e : kOps) known = known || op == e.op;
  if (!known) {
    std::string names;
    for (const Entry& e : kOps) names += (names.empty() ? "" : ", ") + std::string(e.op);
    throw Error("ERR_UNKNOWN_OP", "unknown op '" + op + "' for the CUDA backend; allowed: " + names);
  }
  std::string allowed = "cuda";
  for (const Entry& e : kLibraryOps) {
    if (op == e.op) allowed += ", cudnn";
  }
  const bool library = variant == "cudnn" && allowed.find("cudnn") != std::string::npos;
  if (variant != "cuda" && !library) throw Error("ERR_UNKNOWN_VARIANT", op + ": unknown variant '" + variant + "' for the CUDA backend; allowed: " + allowed);
  if (p.flag("blocked")) throw Error("ERR_UNSUPPORTED", op + ": the nChw16c layout (blocked=1) is the CPU's oneDNN layout; the CUDA backend takes NCHW");
  if (library) return makeCudnnBatchNorm(op, p, layer);
  if (op.rfind("batchnorm", 0) == 0) return makeCudaBatchNorm(op, p, layer);
  if (op.find("pool") != std::string::npos) return makeCudaPool(op, p, layer);
  if (op.rfind("fc-", 0) == 0) return makeCudaLinear(op, p, layer);
  if (op == "allreduce-local" || op == "link-hold") return makeCudaComm(op, p, layer);
  if (op == "input") return makeCudaInput(op, p, layer);
  return makeCudaElementOp(op, p, layer);
}

}  // namespace stepscope
