// Conv variant `onednn`: oneDNN's convolution primitives with every tensor in
// the layout oneDNN prefers (format_tag::any: blocked, e.g. nChw16c). A real
// step keeps activations and weights in that layout from layer to layer, so
// the convolution is timed alone; the reorders between our plain NCHW
// buffers and the blocked ones run as kernels of their own (op "reorder") so
// their cost is on the timeline, not hidden in the convolution's time.
#include "cpu/conv_kernel.h"
#include "core/error.h"

#ifdef STEPSCOPE_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>

namespace stepscope {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& cpuEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One tensor role: the plain (user) layout and the layout the primitive wants.
struct Operand {
  memory::desc plain;
  memory::desc preferred;
  memory blocked;        // empty when preferred == plain
  dnnl::reorder toBlocked, toPlain;  // built once, reused every call
  bool needsReorder() const { return preferred != plain; }
};

class OnednnConv : public ConvKernel {
 public:
  // plainActivations: x and y stay NCHW (oneDNN picks an implementation for
  // that layout); only the weights use oneDNN's preferred layout.
  // layouts: how the caller holds x and y (NCHW, or nChw16c when the step
  // keeps oneDNN's layout between layers, so no reorder is needed).
  OnednnConv(const ConvShape& sh, ConvPass pass, const std::string& layer, bool plainActivations, ConvLayouts layouts)
      : ConvKernel(sh, pass, plainActivations ? "onednn-nchw" : "onednn", layer), plainActivations_(plainActivations),
        layouts_(layouts) {
    try {
      build();
    } catch (const dnnl::error& e) {
      throw Error("ERR_ONEDNN", "oneDNN could not create a " + std::string(convPassName(pass)) + " convolution for " +
                                    sh.describe() + ": " + e.what());
    }
  }

  std::string implementation() const override { return impl_; }
  size_t workspaceBytes() const override { return workspace_; }

  void execute(const ConvTensors& t, KernelRecorder& recorder) override {
    try {
      run(t, recorder);
    } catch (const dnnl::error& e) {
      throw Error("ERR_ONEDNN", std::string("oneDNN convolution failed: ") + e.what());
    }
  }

 private:
  void build() {
    const auto& sh = shape_;
    memory::dims xDims = {sh.n, sh.c, sh.h, sh.w}, wDims = {sh.k, sh.c, sh.r, sh.s}, yDims = {sh.n, sh.k, sh.p(), sh.q()};
    memory::dims strides = {sh.stride, sh.stride}, padL = {sh.pad, sh.pad};
    // Right padding that makes (H + padL + padR - R) / stride + 1 == P exactly.
    memory::dims padR = {(sh.p() - 1) * sh.stride + sh.r - sh.h - sh.pad, (sh.q() - 1) * sh.stride + sh.s - sh.w - sh.pad};
    const tag activations = plainActivations_ ? tag::nchw : tag::any;
    memory::desc xAny(xDims, dt::f32, activations), wAny(wDims, dt::f32, tag::any), yAny(yDims, dt::f32, activations);
    auto user = [](ActivationLayout l) { return l == ActivationLayout::NChw16c ? tag::nChw16c : tag::nchw; };
    x_.plain = memory::desc(xDims, dt::f32, user(layouts_.x));
    w_.plain = memory::desc(wDims, dt::f32, tag::oihw);
    y_.plain = memory::desc(yDims, dt::f32, user(layouts_.y));

    auto& eng = cpuEngine();
    // Our own scratchpad per kernel (not the library's shared one): its size
    // shows in workspaceBytes and executions never share it.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::convolution_forward::desc fwdDesc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                            xAny, wAny, yAny, strides, padL, padR);
    dnnl::convolution_forward::primitive_desc fwdPd(fwdDesc, attr, eng);
    switch (pass_) {
      case ConvPass::Forward: {
        prim_ = dnnl::convolution_forward(fwdPd);
        setPreferred(fwdPd.src_desc(), fwdPd.weights_desc(), fwdPd.dst_desc());
        impl_ = fwdPd.impl_info_str();
        scratchpad_ = memory(fwdPd.scratchpad_desc(), eng);
        break;
      }
      case ConvPass::BackwardData: {
        dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, xAny, wAny, yAny, strides, padL, padR);
        dnnl::convolution_backward_data::primitive_desc pd(d, attr, eng, fwdPd);
        prim_ = dnnl::convolution_backward_data(pd);
        setPreferred(pd.diff_src_desc(), pd.weights_desc(), pd.diff_dst_desc());
        impl_ = pd.impl_info_str();
        scratchpad_ = memory(pd.scratchpad_desc(), eng);
        break;
      }
      case ConvPass::BackwardFilter: {
        dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, xAny, wAny, yAny, strides, padL,
                                                   padR);
        dnnl::convolution_backward_weights::primitive_desc pd(d, attr, eng, fwdPd);
        prim_ = dnnl::convolution_backward_weights(pd);
        setPreferred(pd.src_desc(), pd.diff_weights_desc(), pd.diff_dst_desc());
        impl_ = pd.impl_info_str();
        scratchpad_ = memory(pd.scratchpad_desc(), eng);
        break;
      }
    }
    workspace_ = scratchpad_.get_desc().get_size();
    for (Operand* o : {&x_, &w_, &y_}) {
      if (o->needsReorder()) {
        o->blocked = memory(o->preferred, eng);
        o->toBlocked = dnnl::reorder(dnnl::reorder::primitive_desc(eng, o->plain, eng, o->preferred));
        o->toPlain = dnnl::reorder(dnnl::reorder::primitive_desc(eng, o->preferred, eng, o->plain));
        workspace_ += o->preferred.get_size();
      }
    }
  }

  void setPreferred(const memory::desc& x, const memory::desc& w, const memory::desc& y) {
    x_.preferred = x;
    w_.preferred = w;
    y_.preferred = y;
  }

  // Inputs and outputs per pass: fwd reads x, w and writes y; bwd-data reads
  // w, dy and writes dx; bwd-filter reads x, dy and writes dw.
  void run(const ConvTensors& t, KernelRecorder& recorder) {
    auto& eng = cpuEngine();
    dnnl::stream strm(eng);
    memory xUser(x_.plain, eng, t.x), wUser(w_.plain, eng, t.w), yUser(y_.plain, eng, t.y);
    memory& x = x_.needsReorder() ? x_.blocked : xUser;
    memory& w = w_.needsReorder() ? w_.blocked : wUser;
    memory& y = y_.needsReorder() ? y_.blocked : yUser;

    const bool xIn = pass_ != ConvPass::BackwardData, wIn = pass_ != ConvPass::BackwardFilter,
               yIn = pass_ != ConvPass::Forward;
    if (xIn) reorder(xUser, x_, true, strm, recorder);
    if (wIn) reorder(wUser, w_, true, strm, recorder);
    if (yIn) reorder(yUser, y_, true, strm, recorder);

    recorder.run(info(), [&] {
      switch (pass_) {
        case ConvPass::Forward:
          prim_.execute(strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}, {DNNL_ARG_SCRATCHPAD, scratchpad_}});
          break;
        case ConvPass::BackwardData:
          prim_.execute(strm, {{DNNL_ARG_DIFF_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, y}, {DNNL_ARG_SCRATCHPAD, scratchpad_}});
          break;
        case ConvPass::BackwardFilter:
          prim_.execute(strm, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_WEIGHTS, w}, {DNNL_ARG_DIFF_DST, y}, {DNNL_ARG_SCRATCHPAD, scratchpad_}});
          break;
      }
      strm.wait();
    });

    if (!xIn) reorder(xUser, x_, false, strm, recorder);
    if (!wIn) reorder(wUser, w_, false, strm, recorder);
    if (!yIn) reorder(yUser, y_, false, strm, recorder);
  }

  // Plain -> blocked for an input (toBlocked) or blocked -> plain for an output.
  void reorder(memory& user, Operand& o, bool toBlocked, dnnl::stream& strm, KernelRecorder& recorder) {
    if (!o.needsReorder()) return;
    KernelInfo i = info("reorder");
    i.flops = 0;
    i.bytes = 2.0 * o.plain.get_size();
    recorder.run(i, [&] {
      memory& src = toBlocked ? user : o.blocked;
      memory& dst = toBlocked ? o.blocked : user;
      (toBlocked ? o.toBlocked : o.toPlain).execute(strm, src, dst);
      strm.wait();
    });
  }

  bool plainActivations_;
  ConvLayouts layouts_;
  Operand x_, w_, y_;
  dnnl::primitive prim_;
  memory scratchpad_;
  std::string impl_;
  size_t workspace_ = 0;
};

}  // namespace

std::unique_ptr<ConvKernel> makeOnednnConv(const ConvShape& shape, ConvPass pass, const std::string& layer,
                                           bool plainActivations, ConvLayouts layouts) {
  return std::make_unique<OnednnConv>(shape, pass, layer, plainActivations, layouts);
}

std::string onednnVersion() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace stepscope

#else  // !STEPSCOPE_HAVE_ONEDNN

namespace stepscope {
std::unique_ptr<ConvKernel> makeOnednnConv(const ConvShape&, ConvPass, const std::string&, bool, ConvLayouts) {
  throw Error("ERR_UNAVAILABLE", "conv variant 'onednn' is unavailable: the addon was built without oneDNN");
}
std::string onednnVersion() { return ""; }
}  // namespace stepscope

#endif
