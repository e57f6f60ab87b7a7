// Convolution variants on the CUDA backend. Like cpu/conv_kernel.h: one
// prepared kernel per (shape, pass, variant), tensors NCHW / KCRS fp32 with
// the roles of cpu/conv_shape.h (x, w, y; dx, dw, dy for the backward passes).
//
// Variants (the table is cudaConvVariants() in conv_cuda.cc):
//   cudnn:<algo>        one legacy cuDNN algorithm by name, per pass:
//                       fwd        implicit-gemm implicit-precomp-gemm gemm direct fft fft-tiling winograd winograd-nonfused
//                       bwd-data   algo-0 algo-1 fft fft-tiling winograd winograd-nonfused
//                       bwd-filter algo-0 algo-1 fft algo-3 winograd winograd-nonfused fft-tiling
//                       (by position, each the cuDNN enum value: checked at compile time)
//                       (conv_cudnn.cc; what cuDNN rejects is ERR_UNSUPPORTED, never replaced)
//   cudnn:heuristic     cuDNN's pick without timing (cudnnGet*Algorithm_v7)
//   cudnn:autotune      every algorithm timed (cudnnFind*), the fastest kept in the kernel
//   direct              our kernel, one thread per output element (conv_direct.cu)
//   im2col-cublas       our im2col/col2im kernels + cublasSgemm (conv_im2col.cu)
//   implicit-gemm-tf32  our implicit GEMM on tensor cores, tf32 inputs, fp32 accumulation (conv_igemm.cu)
//   implicit-gemm-bf16  the same with bf16 inputs
//   implicit-gemm-tf32-pipelined  the tf32 one with its gathers (cp.async) two K steps ahead of the multiplications
//   implicit-gemm-tf32-along-m    the pipelined one with A gathered along m through a per-layer tap table (fwd, bwd-data)
// Options: dtype "fp32" (cuDNN FMA math, plain cuBLAS) or "tf32" (cuDNN
// default math, cuBLAS TF32 tensor ops); our own kernels have a fixed precision.
// layout "nchw" or "nhwc" (x and y NHWC, weights still KCRS): cudnn:* only;
// dtype "bf16" (bf16 x and y buffers): cudnn:* only.
#pragma once
#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

#include "core/timeline.h"
#include "cpu/conv_shape.h"

namespace stepscope {

// Bf16: bf16 x and y buffers, bf16 products (cudnn:* only).
enum class ConvMath { Fp32, Tf32, Bf16 };

class CudaConvKernel {
 public:
  // Made on the calling thread's current GPU (makeCudaConvKernel binds it), which it remembers.
  CudaConvKernel(const ConvShape& shape, ConvPass pass, std::string variant, std::string layer);
  virtual ~CudaConvKernel() = default;

  // Enqueues the pass on `stream` (asynchronous). Errors of the launch throw.
  virtual void launch(float* x, float* w, float* y, cudaStream_t stream) = 0;
  virtual size_t workspaceBytes() const { return 0; }
  // What really runs, e.g. "cudnn:heuristic -> implicit-precomp-gemm".
  virtual std::string implementation() const { return variant_; }
  // "fp32", "tf32" or "bf16": the precision of the products, for the check's tolerance.
  virtual std::string precision() const { return "fp32"; }
  // "nchw" or "nhwc": the layout of x and y (the weights are KCRS in both).
  virtual std::string layout() const { return "nchw"; }
  // x and y (dx, dy) are bf16 buffers; the weights (and their gradient) stay fp32.
  virtual bool bf16() const { return false; }
  // Traffic of converting the weights (or their gradient) for the library, per launch.
  virtual double convertedWeightBytes() const { return 0; }
  // A bwd-data kernel reads the weight copy `forward` (the same layer's fwd kernel) made for the library,
  // instead of converting the weights again: valid while every launch of this kernel follows one of
  // `forward` with the same weights (a training step: forward, backward, then the update). Only cuDNN
  // kernels that take a converted copy (NHWC, bf16) share one; others throw ERR_UNSUPPORTED.
  virtual void useWeightCopyOf(CudaConvKernel& forward);

  const ConvShape& shape() const { return shape_; }
  ConvPass pass() const { return pass_; }
  const std::string& variant() const { return variant_; }
  const std::string& layer() const { return layer_; }
  // The GPU it was prepared on (its workspace, handle and algorithm choice): enqueued there only.
  int device() const { return device_; }
  // "res2a_branch2b fwd cudnn:fft": the context of every error message (made once: launches read it).
  const std::string& context() const { return context_; }
  KernelInfo info() const;

 protected:
  ConvShape shape_;
  ConvPass pass_;
  std::string variant_;
  std::string layer_;
  int device_;

 private:
  std::string context_;
};

struct CudaConvVariantInfo {
  std::string name;
  std::string description;
  std::vector<std::string> passes;  // the passes it has
};

std::vector<CudaConvVariantInfo> cudaConvVariants();

// Checks the name and pass first (ERR_UNKNOWN_VARIANT listing the valid
// names; ERR_UNSUPPORTED when the variant has no such pass), then needs a
// device (ERR_NO_DEVICE). Library statuses become CudaErrors. Prepared on
// GPU `device` (-1: the default one).
std::unique_ptr<CudaConvKernel> makeCudaConvKernel(const ConvShape& shape, ConvPass pass, const std::string& variant,
                                                   const std::string& layer, ConvMath math, bool nhwc = false, int device = -1);

// Factories, one per file.
std::unique_ptr<CudaConvKernel> makeCudnnConv(const ConvShape&, ConvPass, const std::string& variant,
                                              const std::string& layer, ConvMath math, bool nhwc);
std::unique_ptr<CudaConvKernel> makeDirectCudaConv(const ConvShape&, ConvPass, const std::string& layer);
std::unique_ptr<CudaConvKernel> makeIm2colCublasConv(const ConvShape&, ConvPass, const std::string& layer, ConvMath math);
// Our implicit GEMM's kernels (conv_igemm.cu).
enum class ImplicitGemmKind { Tf32, Bf16, Tf32Pipelined, Tf32AlongM };
std::unique_ptr<CudaConvKernel> makeImplicitGemmConv(const ConvShape&, ConvPass, const std::string& layer, ImplicitGemmKind kind);

// cuDNN algorithm names of a pass, in cuDNN's enum order (conv_cudnn.cc).
std::vector<std::string> cudnnAlgorithmNames(ConvPass pass);

}  // namespace stepscope
