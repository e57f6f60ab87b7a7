// The numeric parameters of an op (batch norm, pooling, ...) and the buffers
// it takes: shared by the CPU kernels (op_kernel.h) and the CUDA ones
// (cuda/op_cuda.h), so both backends read the same parameters with the same
// range checks and declare the same buffers.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/timeline.h"

namespace stepscope {

// Numeric parameters of an op, read with range checks that name the field.
class OpParams {
 public:
  explicit OpParams(std::map<std::string, double> values, std::string op)
      : values_(std::move(values)), op_(std::move(op)) {}
  double number(const std::string& name) const;
  double number(const std::string& name, double fallback) const;
  int integer(const std::string& name, int lo, int hi) const;
  int integer(const std::string& name, int lo, int hi, int fallback) const;
  bool flag(const std::string& name) const { return number(name, 0) != 0; }

 private:
  std::map<std::string, double> values_;
  std::string op_;
};

struct BufferSpec {
  std::string name;
  int64_t length;
  bool bf16 = false;  // CUDA's bf16 activations (step --dtype bf16); the CPU's are fp32
};

// Bytes of an op's buffers, its traffic figure on both backends.
inline double bufferBytes(const std::vector<BufferSpec>& buffers) {
  double total = 0;
  for (const auto& b : buffers) total += (b.bf16 ? 2.0 : 4.0) * double(b.length);
  return total;
}

// What an op kernel is on either backend: its names, the buffers it takes and
// its flops, and the KernelInfo its timeline records carry.
class OpDescription {
 public:
  OpDescription(std::string op, std::string variant, std::string pass, std::string layer)
      : op_(std::move(op)), variant_(std::move(variant)), pass_(std::move(pass)), layer_(std::move(layer)) {}
  virtual ~OpDescription() = default;

  const std::vector<BufferSpec>& buffers() const { return buffers_; }
  const std::string& op() const { return op_; }
  const std::string& variant() const { return variant_; }
  const std::string& pass() const { return pass_; }
  const std::string& layer() const { return layer_; }
  double flops() const { return flops_; }
  double bytes() const { return bufferBytes(buffers_); }
  KernelInfo info() const {
    KernelInfo i;
    i.op = op_;
    i.variant = variant_;
    i.layer = layer_;
    i.pass = pass_;
    i.flops = flops_;
    i.bytes = bytes();
    return i;
  }

 protected:
  std::string op_, variant_, pass_, layer_;
  std::vector<BufferSpec> buffers_;
  double flops_ = 0;
};

// One row of a backend's op table (`variants` lists them).
struct OpVariantInfo {
  std::string op;
  std::string variant;
  std::string description;
};

}  // namespace stepscope
