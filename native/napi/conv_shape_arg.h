// The {n,c,h,w,k,r,s,stride,pad} object both addons' ConvKernel constructors take.
#pragma once
#include <napi.h>

#include "core/error.h"
#include "cpu/conv_shape.h"
#include "napi/util.h"

namespace stepscope {

inline ConvShape convShapeArg(const Napi::Value& value) {
  if (!value.IsObject()) throw Error("ERR_INVALID_ARG", "ConvKernel(shape, ...): shape must be an object");
  Napi::Object o = value.As<Napi::Object>();
  ConvShape shape;
  shape.n = intProp(o, "n", "shape");
  shape.c = intProp(o, "c", "shape");
  shape.h = intProp(o, "h", "shape");
  shape.w = intProp(o, "w", "shape");
  shape.k = intProp(o, "k", "shape");
  shape.r = intProp(o, "r", "shape");
  shape.s = intProp(o, "s", "shape");
  shape.stride = intProp(o, "stride", "shape");
  shape.pad = intProp(o, "pad", "shape");
  return shape;
}

}  // namespace stepscope
