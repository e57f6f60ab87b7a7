// softmax-xent: logits [n, classes], labels [n] (class indices held as floats)
// -> loss [1] = mean over n of -log softmax(logits)[label], and
//    dlogits [n, classes] = (softmax - onehot(label)) / n.
// A label that is not an integer in [0, classes) is an error naming the row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "core/error.h"
#include "cpu/op_kernel.h"

namespace stepscope {
namespace {

class SoftmaxCrossEntropy : public OpKernel {
 public:
  SoftmaxCrossEntropy(bool fast, int n, int classes, const std::string& layer)
      : OpKernel("softmax-xent", fast ? "fast" : "reference", "fwd", layer), n_(n), classes_(classes) {
    buffers_ = {{"logits", int64_t(n) * classes}, {"labels", n}, {"loss", 1}, {"dlogits", int64_t(n) * classes}};
    flops_ = 5.0 * double(n) * classes;
  }

  void run(const std::vector<float*>& b) override {
    const float *logits = b[0], *labels = b[1];
    float *loss = b[2], *dlogits = b[3];
    for (int i = 0; i < n_; ++i) {
      const float l = labels[i];
      if (!(l >= 0 && l < float(classes_) && l == std::floor(l))) {
        std::ostringstream label;
        label << l;
        throw Error("ERR_INVALID_ARG", "softmax-xent: label " + label.str() + " of sample " + std::to_string(i) +
                                           " is not a class index in 0.." + std::to_string(classes_ - 1));
      }
    }
    double total = 0;
    for (int i = 0; i < n_; ++i) {  // log-sum-exp, shifted by the row's max
      const float* row = logits + int64_t(i) * classes_;
      float* grad = dlogits + int64_t(i) * classes_;
      const float mx = *std::max_element(row, row + classes_);
      double sum = 0;
      for (int j = 0; j < classes_; ++j) sum += std::exp(double(row[j]) - mx);
      const double logSum = std::log(sum) + mx;
      const int label = int(labels[i]);
      total += logSum - row[label];
      for (int j = 0; j < classes_; ++j) grad[j] = float((std::exp(double(row[j]) - logSum) - (j == label)) / n_);
    }
    loss[0] = float(total / n_);
  }

 private:
  int n_, classes_;
};

}  // namespace

std::unique_ptr<OpKernel> makeLoss(const std::string&, bool fast, const OpParams& p, const std::string& layer) {
  return std::make_unique<SoftmaxCrossEntropy>(fast, p.integer("n", 1, 1 << 20), p.integer("classes", 1, 1 << 24), layer);
}

}  // namespace stepscope
