// cuDNN convolutions through the legacy API (cudnnConvolution{Forward,
// BackwardData,BackwardFilter}), which cuDNN 9 still has. Variants:
//   cudnn:<algo>     one algorithm enum by name; a workspace query that says
//                    NOT_SUPPORTED becomes ERR_UNSUPPORTED (never a substitute)
//   cudnn:heuristic  the first usable result of cudnnGet*Algorithm_v7
//   cudnn:autotune   cudnnFind*: every algorithm run and timed (on the
//                    default stream), the fastest kept in the prepared kernel
//                    (the plan's cache)
// A usable result: status SUCCESS, FMA math for dtype fp32, a workspace query
// that succeeds; it runs with the math type it was found with.
// fp32 tensors; math FMA-only for dtype fp32, cuDNN's default (TF32 tensor
// cores allowed) for tf32. Layout NCHW, or NHWC (step --layout nhwc): then
// x and y are NHWC and cuDNN takes the filter as KRSC, transposed on the
// device from the step's KCRS weights before fwd and bwd-data, and the
// KRSC gradient transposed back after bwd-filter (inside the same record).
// Dtype bf16 (step --dtype bf16): x and y are bf16 buffers, the weights are
// rounded to a bf16 copy (in the layout's order) before fwd and bwd-data,
// bwd-filter's bf16 gradient is widened back into the fp32 one; products on
// tensor cores, fp32 accumulation (cuDNN's BFLOAT16 config, compute FLOAT).
#include <cudnn.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "cuda/conv_cuda.h"
#include "cuda/cuda_buffer.h"
#include "cuda/cuda_error.h"
#include "cuda/device.h"
#include "cuda/layout_kernels.h"

namespace stepscope {

// Index = the cuDNN enum value: a name by position is the algorithm cuDNN
// runs, so every position is checked against cudnn_ops.h at compile time
// (bwd-filter's WINOGRAD, 4, is listed though cuDNN implements none: it is
// refused as unsupported, and the names after it keep their values).
namespace {
constexpr const char* kForwardNames[] = {"implicit-gemm", "implicit-precomp-gemm", "gemm", "direct", "fft", "fft-tiling", "winograd", "winograd-nonfused"};
static_assert(std::size(kForwardNames) == CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
static_assert(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM == 0 && CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM == 1 &&
              CUDNN_CONVOLUTION_FWD_ALGO_GEMM == 2 && CUDNN_CONVOLUTION_FWD_ALGO_DIRECT == 3 && CUDNN_CONVOLUTION_FWD_ALGO_FFT == 4 &&
              CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING == 5 && CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD == 6 &&
              CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED == 7);
constexpr const char* kBackwardDataNames[] = {"algo-0", "algo-1", "fft", "fft-tiling", "winograd", "winograd-nonfused"};
static_assert(std::size(kBackwardDataNames) == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
static_assert(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 == 0 && CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 == 1 && CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT == 2 &&
              CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING == 3 && CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD == 4 &&
              CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED == 5);
constexpr const char* kBackwardFilterNames[] = {"algo-0", "algo-1", "fft", "algo-3", "winograd", "winograd-nonfused", "fft-tiling"};
static_assert(std::size(kBackwardFilterNames) == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
static_assert(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 == 0 && CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 == 1 && CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT == 2 &&
              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3 == 3 && CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD == 4 &&
              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED == 5 && CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING == 6);
}  // namespace

std::vector<std::string> cudnnAlgorithmNames(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return {std::begin(kForwardNames), std::end(kForwardNames)};
    case ConvPass::BackwardData: return {std::begin(kBackwardDataNames), std::end(kBackwardDataNames)};
    case ConvPass::BackwardFilter: return {std::begin(kBackwardFilterNames), std::end(kBackwardFilterNames)};
  }
  return {};
}

namespace {

// The descriptors, destroyed even when the kernel's constructor throws.
struct CudnnDescriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~CudnnDescriptors() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

class CudnnConv : public CudaConvKernel {
 public:
  CudnnConv(const ConvShape& shape, ConvPass pass, const std::string& variant, const std::string& layer, ConvMath math, bool nhwc)
      : CudaConvKernel(shape, pass, variant, layer), math_(math), nhwc_(nhwc) {
    const std::string& ctx = context();
    handle_ = cudnnHandle();
    checkCudnn(cudnnCreateTensorDescriptor(&xDesc_), "cudnnCreateTensorDescriptor", ctx);
    checkCudnn(cudnnCreateTensorDescriptor(&yDesc_), "cudnnCreateTensorDescriptor", ctx);
    checkCudnn(cudnnCreateFilterDescriptor(&wDesc_), "cudnnCreateFilterDescriptor", ctx);
    checkCudnn(cudnnCreateConvolutionDescriptor(&convDesc_), "cudnnCreateConvolutionDescriptor", ctx);
    const ConvShape& s = shape_;
    const cudnnTensorFormat_t format = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    const cudnnDataType_t data = bf16() ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    checkCudnn(cudnnSetTensor4dDescriptor(xDesc_, format, data, s.n, s.c, s.h, s.w),
               "cudnnSetTensor4dDescriptor (x)", ctx);
    checkCudnn(cudnnSetTensor4dDescriptor(yDesc_, format, data, s.n, s.k, s.p(), s.q()),
               "cudnnSetTensor4dDescriptor (y)", ctx);
    checkCudnn(cudnnSetFilter4dDescriptor(wDesc_, data, format, s.k, s.c, s.r, s.s),
               "cudnnSetFilter4dDescriptor", ctx);
    if (nhwc || bf16()) cudnnWeights_ = std::make_shared<DeviceScratch>(size_t(s.wSize()) * (bf16() ? 2 : 4));
    checkCudnn(cudnnSetConvolution2dDescriptor(convDesc_, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
               "cudnnSetConvolution2dDescriptor", ctx);
    checkCudnn(cudnnSetConvolutionMathType(convDesc_, math == ConvMath::Fp32 ? CUDNN_FMA_MATH : math == ConvMath::Bf16 ? CUDNN_TENSOR_OP_MATH : CUDNN_DEFAULT_MATH),
               "cudnnSetConvolutionMathType", ctx);
    int n, c, h, w;
    checkCudnn(cudnnGetConvolution2dForwardOutputDim(convDesc_, xDesc_, wDesc_, &n, &c, &h, &w),
               "cudnnGetConvolution2dForwardOutputDim", ctx);
    if (n != s.n || c != s.k || h != s.p() || w != s.q()) {
      throw Error("ERR_BAD_SHAPE", ctx + ": cuDNN's output shape differs from ours");
    }
    chooseAlgorithm();
    launchContext_ = context() + " (" + algoName_ + ")";
    workspace_ = std::make_unique<DeviceScratch>(workspaceBytes_);
  }

  void launch(float* x, float* w, float* y, cudaStream_t stream) override {
    const std::string& ctx = launchContext_;
    const float one = 1.0f, zero = 0.0f;
    checkCudnn(cudnnSetStream(handle_, stream), "cudnnSetStream", ctx);
    void* ws = workspace_->get();
    const ConvShape& s = shape_;
    float* kcrs = w;  // the step's weights (or their gradient), fp32 KCRS
    const long long rs = (long long)s.r * s.s;
    if (cudnnWeights_) {
      w = static_cast<float*>(cudnnWeights_->get());
      // A shared copy (bwd-data) was made by this layer's forward launch, from the same weights.
      if (pass_ != ConvPass::BackwardFilter && !sharedCopy_) launchWeightsForCudnn(kcrs, w, s.k, s.c, rs, nhwc_, bf16(), stream);
    }
    switch (pass_) {
      case ConvPass::Forward:
        checkCudnn(cudnnConvolutionForward(handle_, &one, xDesc_, x, wDesc_, w, convDesc_,
                                           cudnnConvolutionFwdAlgo_t(algo_), ws, workspaceBytes_, &zero, yDesc_, y),
                   "cudnnConvolutionForward", ctx);
        break;
      case ConvPass::BackwardData:
        checkCudnn(cudnnConvolutionBackwardData(handle_, &one, wDesc_, w, yDesc_, y, convDesc_,
                                                cudnnConvolutionBwdDataAlgo_t(algo_), ws, workspaceBytes_, &zero,
                                                xDesc_, x),
                   "cudnnConvolutionBackwardData", ctx);
        break;
      case ConvPass::BackwardFilter:
        checkCudnn(cudnnConvolutionBackwardFilter(handle_, &one, xDesc_, x, yDesc_, y, convDesc_,
                                                  cudnnConvolutionBwdFilterAlgo_t(algo_), ws, workspaceBytes_, &zero,
                                                  wDesc_, w),
                   "cudnnConvolutionBackwardFilter", ctx);
        if (cudnnWeights_) launchWeightsFromCudnn(w, kcrs, s.k, s.c, rs, nhwc_, bf16(), stream);
        break;
    }
  }

  size_t workspaceBytes() const override { return workspaceBytes_; }
  std::string implementation() const override {
    if (variant_ == "cudnn:heuristic" || variant_ == "cudnn:autotune") return variant_ + " -> cudnn:" + algoName_ + note_;
    return variant_;
  }
  std::string precision() const override { return math_ == ConvMath::Bf16 ? "bf16" : math_ == ConvMath::Tf32 ? "tf32" : "fp32"; }
  std::string layout() const override { return nhwc_ ? "nhwc" : "nchw"; }
  bool bf16() const override { return math_ == ConvMath::Bf16; }
  double convertedWeightBytes() const override {
    if (!cudnnWeights_ || sharedCopy_) return 0.0;
    return double(shape_.wSize()) * (4.0 + (bf16() ? 2.0 : 4.0));  // read fp32, write the copy (or back)
  }

  void useWeightCopyOf(CudaConvKernel& forward) override {
    auto* fwd = dynamic_cast<CudnnConv*>(&forward);
    const auto refuse = [&](const std::string& why) { throw CudaError("ERR_UNSUPPORTED", context() + ": cannot use the weight copy of " + forward.context() + ": " + why, "", layer_); };
    if (pass_ != ConvPass::BackwardData) refuse("only a bwd-data kernel reads another's copy");
    if (!fwd || fwd->pass_ != ConvPass::Forward) refuse("it is not a cuDNN forward kernel");
    if (fwd->shape_.describe() != shape_.describe() || fwd->math_ != math_ || fwd->nhwc_ != nhwc_ || fwd->device() != device()) refuse("another shape, dtype, layout or GPU");
    if (!cudnnWeights_ || !fwd->cudnnWeights_) refuse("neither converts the weights (NCHW fp32/tf32 reads them as they are)");
    cudnnWeights_ = fwd->cudnnWeights_;  // this kernel's own copy goes
    sharedCopy_ = true;
  }

 private:
  // The workspace `algo` needs with the descriptors as they are, or cuDNN's refusal.
  cudnnStatus_t queryWorkspace(int algo, size_t* bytes) const {
    switch (pass_) {
      case ConvPass::Forward:
        return cudnnGetConvolutionForwardWorkspaceSize(handle_, xDesc_, wDesc_, convDesc_, yDesc_, cudnnConvolutionFwdAlgo_t(algo), bytes);
      case ConvPass::BackwardData:
        return cudnnGetConvolutionBackwardDataWorkspaceSize(handle_, wDesc_, yDesc_, convDesc_, xDesc_, cudnnConvolutionBwdDataAlgo_t(algo), bytes);
      case ConvPass::BackwardFilter:
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle_, xDesc_, yDesc_, convDesc_, wDesc_, cudnnConvolutionBwdFilterAlgo_t(algo), bytes);
    }
    return CUDNN_STATUS_BAD_PARAM;
  }

  static const char* workspaceQueryName(ConvPass pass) {
    return pass == ConvPass::Forward        ? "cudnnGetConvolutionForwardWorkspaceSize"
           : pass == ConvPass::BackwardData ? "cudnnGetConvolutionBackwardDataWorkspaceSize"
                                            : "cudnnGetConvolutionBackwardFilterWorkspaceSize";
  }

  size_t workspaceFor(int algo) {
    size_t bytes = 0;
    checkCudnn(queryWorkspace(algo, &bytes), workspaceQueryName(pass_), context());
    return bytes;
  }

  // Results of the v7 heuristics or of Find, the same fields for each pass.
  struct Candidate {
    int algo;
    cudnnStatus_t status;
    float timeMs;
    size_t memory;
    cudnnMathType_t mathType;
  };

  template <typename Perf>
  static std::vector<Candidate> candidates(const Perf* perf, int count) {
    std::vector<Candidate> out;
    for (int i = 0; i < count; ++i)
      out.push_back({int(perf[i].algo), perf[i].status, perf[i].time, perf[i].memory, perf[i].mathType});
    return out;
  }

  std::vector<Candidate> query(bool timed) {
    const std::string& ctx = context();
    int returned = 0;
    // Find runs and times every algorithm on the handle's stream: the default
    // one, not whatever stream the shared handle was last given (a JS stream
    // since collected, or one being captured into a graph).
    if (timed) checkCudnn(cudnnSetStream(handle_, nullptr), "cudnnSetStream", ctx);
    struct ClearAfter {  // Find reports a failed cudaMalloc of a workspace as that algorithm's status, not as ours to inherit
      ~ClearAfter() { cudaGetLastError(); }
    } clearAfter;
    switch (pass_) {
      case ConvPass::Forward: {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        checkCudnn(timed ? cudnnFindConvolutionForwardAlgorithm(handle_, xDesc_, wDesc_, convDesc_, yDesc_,
                                                                 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf)
                         : cudnnGetConvolutionForwardAlgorithm_v7(handle_, xDesc_, wDesc_, convDesc_, yDesc_,
                                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf),
                   timed ? "cudnnFindConvolutionForwardAlgorithm" : "cudnnGetConvolutionForwardAlgorithm_v7", ctx);
        return candidates(perf, returned);
      }
      case ConvPass::BackwardData: {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        checkCudnn(timed ? cudnnFindConvolutionBackwardDataAlgorithm(handle_, wDesc_, yDesc_, convDesc_, xDesc_,
                                                                      CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf)
                         : cudnnGetConvolutionBackwardDataAlgorithm_v7(handle_, wDesc_, yDesc_, convDesc_, xDesc_,
                                                                       CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf),
                   timed ? "cudnnFindConvolutionBackwardDataAlgorithm" : "cudnnGetConvolutionBackwardDataAlgorithm_v7", ctx);
        return candidates(perf, returned);
      }
      case ConvPass::BackwardFilter: {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        checkCudnn(timed ? cudnnFindConvolutionBackwardFilterAlgorithm(handle_, xDesc_, yDesc_, convDesc_, wDesc_,
                                                                        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf)
                         : cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle_, xDesc_, yDesc_, convDesc_, wDesc_,
                                                                         CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf),
                   timed ? "cudnnFindConvolutionBackwardFilterAlgorithm" : "cudnnGetConvolutionBackwardFilterAlgorithm_v7", ctx);
        return candidates(perf, returned);
      }
    }
    return {};
  }

  void chooseAlgorithm() {
    const auto names = cudnnAlgorithmNames(pass_);
    if (variant_ == "cudnn:heuristic" || variant_ == "cudnn:autotune") {
      const bool timed = variant_ == "cudnn:autotune";
      int tried = 0;
      int failed = 0, notFma = 0, noWorkspace = 0;  // why results were passed over, for the error
      std::string firstStatus;
      const std::vector<Candidate> results = query(timed);
      for (const Candidate& c : results) {
        if (c.status != CUDNN_STATUS_SUCCESS) {
          if (failed++ == 0) firstStatus = cudnnGetErrorString(c.status);
          continue;
        }
        // With dtype fp32 only FMA math is acceptable: DEFAULT math would allow tf32.
        if (math_ == ConvMath::Fp32 && c.mathType != CUDNN_FMA_MATH) {
          ++notFma;
          continue;
        }
        ++tried;
        if (algo_ >= 0) continue;
        // Run the algorithm with the math it was found (and timed) with, as PyTorch
        // does: another math type is another kernel.
        checkCudnn(cudnnSetConvolutionMathType(convDesc_, c.mathType), "cudnnSetConvolutionMathType", context());
        // A recommended algorithm whose workspace query then fails (seen with
        // cuDNN's heuristics) is passed over for the next one.
        size_t bytes = 0;
        if (queryWorkspace(c.algo, &bytes) != CUDNN_STATUS_SUCCESS) {
          --tried;
          ++noWorkspace;
          continue;
        }
        algo_ = c.algo;
        workspaceBytes_ = std::max(c.memory, bytes);
        if (timed) note_ = " (fastest in cudnnFind: " + std::to_string(c.timeMs) + " ms)";
      }
      if (algo_ < 0) {
        throw CudaError("ERR_UNSUPPORTED",
                        context() + ": cuDNN offers no usable algorithm for this layer: of " + std::to_string(results.size()) + " results, " +
                            std::to_string(failed) + " failed" + (firstStatus.empty() ? "" : " (first: " + firstStatus + ")") + ", " +
                            std::to_string(notFma) + " need tensor-op math (dtype fp32 takes FMA only), " + std::to_string(noWorkspace) +
                            " refused their workspace query",
                        "no algorithm", layer_);
      }
      if (timed) note_ += ", " + std::to_string(tried) + " algorithms ran";
      algoName_ = algo_ < int(names.size()) ? names[algo_] : "algo-" + std::to_string(algo_);
      return;
    }
    algoName_ = variant_.substr(6);
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == algoName_) algo_ = int(i);
    // NOT_SUPPORTED here means the algorithm cannot run this layer: ERR_UNSUPPORTED.
    workspaceBytes_ = workspaceFor(algo_);
  }

  ConvMath math_;
  cudnnHandle_t handle_ = nullptr;
  CudnnDescriptors desc_;
  cudnnTensorDescriptor_t& xDesc_ = desc_.x;
  cudnnTensorDescriptor_t& yDesc_ = desc_.y;
  cudnnFilterDescriptor_t& wDesc_ = desc_.w;
  cudnnConvolutionDescriptor_t& convDesc_ = desc_.conv;
  int algo_ = -1;
  std::string algoName_;
  std::string launchContext_;  // context() and the algorithm, for the launches' errors
  std::string note_;
  size_t workspaceBytes_ = 0;
  std::unique_ptr<DeviceScratch> workspace_;
  bool nhwc_;
  std::shared_ptr<DeviceScratch> cudnnWeights_;  // NHWC or bf16: the weights (or their gradient) as cuDNN takes them
  bool sharedCopy_ = false;                       // cudnnWeights_ is the forward kernel's, converted by its launch
};

}  // namespace

std::unique_ptr<CudaConvKernel> makeCudnnConv(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                              const std::string& layer, ConvMath math, bool nhwc) {
  return std::make_unique<CudnnConv>(shape, pass, variant, layer, math, nhwc);
}

}  // namespace stepscope
