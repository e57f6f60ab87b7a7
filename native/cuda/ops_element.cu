// Elementwise ops, the loss and the optimizer on the CUDA backend, as
// cpu/eltwise.cc, cpu/loss.cc and cpu/sgd.cc.
//   relu-fwd: x -> y;  relu-bwd: y, dy -> dx;  add: a, b -> y (relu=1 fuses the ReLU)
//     (bf16=1: every buffer bf16, the arithmetic fp32)
//   softmax-xent: logits [n, classes], labels [n] -> loss [1], dlogits [n, classes]
//     (a bad label: ERR_INVALID_ARG from the next wait on the GPU, device_check.h)
//   sgd: param, grad, momentum_buffer (in place); with tensors=k, k such triples in one launch (sgd_spans.h)
#include <cuda_runtime.h>

#include "core/bf16.h"
#include "cpu/sgd_params.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device_check.h"
#include "cuda/op_cuda.h"
#include "cuda/op_index.h"
#include "cuda/sgd_spans.h"
#include "cuda/vec_access.h"

namespace stepscope {
namespace {

using namespace cudaops;

enum class Kind { ReluForward, ReluBackward, Add, AddRelu };

// The kind is a template parameter: no branch on it in the loop.
template <Kind kind>
__device__ __forceinline__ float eltwiseValue(float av, float bv) {
  if constexpr (kind == Kind::ReluForward) return av < 0.0f ? 0.0f : av;  // NaN passes, as in PyTorch
  if constexpr (kind == Kind::ReluBackward) return av > 0.0f ? bv : 0.0f;  // a: the forward output, b: dy
  if constexpr (kind == Kind::Add) return av + bv;
  const float v = av + bv;
  return v < 0.0f ? 0.0f : v;
}

// One element per step, or kVec (Vectors: n a multiple of kVec, every buffer aligned to a vector).
template <Kind kind, bool Vectors, typename T>
__global__ void eltwise(long long n, const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ y) {
  constexpr int width = Vectors ? kVec : 1;
  constexpr bool hasB = kind != Kind::ReluForward;
#pragma unroll 2
  for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) * width; i < n; i += (long long)gridDim.x * blockDim.x * width) {
    if constexpr (Vectors) {
      const Vec<T> av = loadVec(a + i);
      Vec<T> bv{}, r;
      if constexpr (hasB) bv = loadVec(b + i);
#pragma unroll
      for (int k = 0; k < kVec; ++k) storef(&r.v[k], eltwiseValue<kind>(loadf(av.v[k]), hasB ? loadf(bv.v[k]) : 0.0f));
      storeVec(y + i, r);
    } else {
      storef(y + i, eltwiseValue<kind>(loadf(a[i]), hasB ? loadf(b[i]) : 0.0f));
    }
  }
}

// A warp per row (op_index.h's lane split: coalesced reads and writes, the
// exponentials spread over 32 lanes), combined by fixed shuffle trees; then
// one thread sums the rows' terms in order (the same loss on every run).
constexpr int kLossRowsPerBlock = 4;
__global__ void softmaxXentRows(int n, int classes, const float* __restrict__ logits, const float* __restrict__ labels,
                                float* __restrict__ dlogits, double* __restrict__ terms) {
  const int i = blockIdx.x * kLossRowsPerBlock + threadIdx.x / kLossLanes, lane = threadIdx.x % kLossLanes;
  if (i >= n) return;  // the whole warp
  const float* row = logits + (long long)i * classes;
  float mx = rowMaxPart(row, classes, lane);
  for (int o = kLossLanes / 2; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  double sum = rowExpSumPart(row, classes, lane, mx);
  for (int o = kLossLanes / 2; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  const double logSum = log(sum) + mx;
  rowGradPart(row, classes, lane, logSum, labels[i], n, dlogits + (long long)i * classes);
  if (lane == 0) terms[i] = rowLossTerm(row, classes, logSum, labels[i]);
}

// Also leaves the first bad label's row for the host (cuda/device_check.h),
// written only on a failure and only over none: a later launch (a replay, an
// eager step without a wait between) never erases an unreported one.
__global__ void meanOfTerms(int n, int classes, const double* __restrict__ terms, const float* __restrict__ labels, float* loss,
                            long long* badLabel) {
  double s = 0;
  for (int i = 0; i < n; ++i) s += terms[i];
  loss[0] = float(s / n);
  if (s == s) return;  // a bad label made its row's term NaN (rowLossTerm): the labels are looked at only then
  const long long word = firstBadLabelWord(labels, n, classes);
  if (word != -1 && *badLabel == -1) *badLabel = word;  // the read crosses PCIe, on a failure only
}

__global__ void sgdKernel(long long n, float* param, const float* __restrict__ grad, float* buf, float lr, float momentum, float wd) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    sgdAt(param, grad, buf, i, lr, momentum, wd);
}

// A group's span per block (sgd_spans.h), with its tensor's buffers.
struct SgdSpanBuffers {
  float* param;
  const float* grad;
  float* buf;
  long long begin, end;
};
// The three buffers are separate allocations (restrict): unrolled, a thread's next loads need not wait for
// this element's stores.
__global__ void sgdGroupKernel(const SgdSpanBuffers* __restrict__ spans, float lr, float momentum, float wd) {
  const SgdSpanBuffers s = spans[blockIdx.x];
  float* __restrict__ param = s.param;
  const float* __restrict__ grad = s.grad;
  float* __restrict__ buf = s.buf;
#pragma unroll 4
  for (long long i = s.begin + threadIdx.x; i < s.end; i += blockDim.x) {
    float p = param[i], m = buf[i];
    sgdValues(p, grad[i], m, lr, momentum, wd);
    buf[i] = m;
    param[i] = p;
  }
}

class CudaEltwise : public CudaOpKernel {
 public:
  CudaEltwise(const std::string& op, long long size, bool relu, bool bf16, const std::string& layer)
      : CudaOpKernel(op == "add" ? "add" : "relu", op == "relu-bwd" ? "bwd" : "fwd", layer), size_(size), bf16_(bf16),
        kind_(op == "relu-fwd" ? Kind::ReluForward : op == "relu-bwd" ? Kind::ReluBackward : relu ? Kind::AddRelu : Kind::Add) {
    if (op == "relu-fwd") buffers_ = {{"x", size, bf16}, {"y", size, bf16}};
    if (op == "relu-bwd") buffers_ = {{"y", size, bf16}, {"dy", size, bf16}, {"dx", size, bf16}};
    if (op == "add") buffers_ = {{"a", size, bf16}, {"b", size, bf16}, {"y", size, bf16}};
    flops_ = double(size);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (bf16_) run<Bf16>(b, stream);
    else run<float>(b, stream);
    checkLaunch("eltwise launch", context());
  }

 private:
  template <typename T>
  void run(const std::vector<float*>& f, cudaStream_t stream) {
    bool vectors = size_ % kVec == 0;
    for (float* p : f) vectors = vectors && isVecAligned<T>(p);
    if (vectors) run<T, true>(f, stream);
    else run<T, false>(f, stream);
  }
  template <typename T, bool Vectors>
  void run(const std::vector<float*>& f, cudaStream_t stream) {
    // bf16 vectors are 8 bytes: two per thread (the grid halved, the loop unrolled by 2) keep 16 bytes in flight.
    const int grid = opGridFor((Vectors ? size_ / kVec : size_) / (Vectors && sizeof(T) == 2 ? 2 : 1));
    auto b = [&](int i) { return reinterpret_cast<T*>(f[i]); };  // a bf16 buffer's elements are Bf16
    switch (kind_) {
      case Kind::ReluForward: eltwise<Kind::ReluForward, Vectors, T><<<grid, 256, 0, stream>>>(size_, b(0), nullptr, b(1)); break;
      case Kind::ReluBackward: eltwise<Kind::ReluBackward, Vectors, T><<<grid, 256, 0, stream>>>(size_, b(0), b(1), b(2)); break;
      case Kind::Add: eltwise<Kind::Add, Vectors, T><<<grid, 256, 0, stream>>>(size_, b(0), b(1), b(2)); break;
      case Kind::AddRelu: eltwise<Kind::AddRelu, Vectors, T><<<grid, 256, 0, stream>>>(size_, b(0), b(1), b(2)); break;
    }
  }

  long long size_;
  bool bf16_;
  Kind kind_;
};

class CudaSoftmaxXent : public CudaOpKernel {
 public:
  CudaSoftmaxXent(int n, int classes, const std::string& layer)
      : CudaOpKernel("softmax-xent", "fwd", layer), n_(n), classes_(classes) {
    buffers_ = {{"logits", (long long)n * classes}, {"labels", n}, {"loss", 1}, {"dlogits", (long long)n * classes}};
    flops_ = 5.0 * double(n) * classes;
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    // Allocated at the first launch: preparing the kernel needs no device.
    if (!terms_) terms_ = std::make_unique<DeviceScratch>(size_t(n_) * sizeof(double));
    if (!badLabel_) {
      const int classes = classes_;
      // The CPU backend throws at the op; here the next wait on the GPU does (ERR_INVALID_ARG, the same message).
      badLabel_ = makeDeviceCheck("ERR_INVALID_ARG", [classes](long long word) { return badLabelMessage(word, classes); }, context());
    }
    double* terms = static_cast<double*>(terms_->get());
    softmaxXentRows<<<(n_ + kLossRowsPerBlock - 1) / kLossRowsPerBlock, kLossRowsPerBlock * kLossLanes, 0, stream>>>(n_, classes_, b[0], b[1], b[3], terms);
    meanOfTerms<<<1, 1, 0, stream>>>(n_, classes_, terms, b[1], b[2], badLabel_->deviceWord());
    checkLaunch("softmax-xent launch", context());
  }

 private:
  int n_, classes_;
  std::unique_ptr<DeviceScratch> terms_;
  std::shared_ptr<DeviceCheck> badLabel_;
};

class CudaSgd : public CudaOpKernel {
 public:
  CudaSgd(SgdParams params, const std::string& layer) : CudaOpKernel("sgd", "update", layer), p_(std::move(params)), spans_(sgdSpans(p_.sizes)) {
    buffers_ = sgdBuffers(p_);
    flops_ = 5.0 * sgdElements(p_);
  }

  void launch(const std::vector<float*>& b, cudaStream_t stream) override {
    if (!p_.group) {
      sgdKernel<<<opGridFor(p_.sizes[0]), 256, 0, stream>>>(p_.sizes[0], b[0], b[1], b[2], p_.lr, p_.momentum, p_.weightDecay);
    } else {
      uploadSpans(b, stream);
      sgdGroupKernel<<<unsigned(spans_.size()), 256, 0, stream>>>(static_cast<const SgdSpanBuffers*>(table_->get()), p_.lr, p_.momentum, p_.weightDecay);
    }
    checkLaunch("sgd launch", context());
  }

 private:
  // The device table of spans with these buffers: made at the first launch and again only when the buffers
  // differ (a step's never do, so a graph capture, where a copy from the host cannot run, finds it made).
  void uploadSpans(const std::vector<float*>& b, cudaStream_t stream) {
    if (table_ && b == uploadedFor_) return;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
      throw Error("ERR_INVALID_STATE", context() + ": a group SGD's buffers changed inside a graph capture: launch it once with these buffers before capturing");
    }
    std::vector<SgdSpanBuffers> table;
    table.reserve(spans_.size());
    for (const SgdSpan& s : spans_) table.push_back({b[3 * s.tensor], b[3 * s.tensor + 1], b[3 * s.tensor + 2], s.begin, s.end});
    if (!table_) {
      table_ = std::make_unique<DeviceScratch>(table.size() * sizeof(SgdSpanBuffers));
    } else {
      // The old table may still be read by launches queued before this one: they finish first.
      checkCuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize", context());
    }
    // Landed when it returns, before the launch that reads it.
    table_->upload(table.data(), table.size() * sizeof(SgdSpanBuffers), context());
    uploadedFor_ = b;
  }

  SgdParams p_;
  std::vector<SgdSpan> spans_;
  std::unique_ptr<DeviceScratch> table_;
  std::vector<float*> uploadedFor_;
};

}  // namespace

std::unique_ptr<CudaOpKernel> makeCudaElementOp(const std::string& op, const OpParams& p, const std::string& layer) {
  if (op == "softmax-xent") return std::make_unique<CudaSoftmaxXent>(p.integer("n", 1, 1 << 20), p.integer("classes", 1, 1 << 24), layer);
  if (op == "sgd") return std::make_unique<CudaSgd>(sgdParams(p), layer);
  return std::make_unique<CudaEltwise>(op, p.integer("size", 1, 2147483647), op == "add" && p.flag("relu"), p.flag("bf16"), layer);
}

}  // namespace stepscope
