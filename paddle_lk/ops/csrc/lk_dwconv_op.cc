// Paddle binding of the large-kernel depthwise conv kernels: two custom operators,
//   lk_dwconv2d(X, W)            -> Out   (+ grad: X@GRAD, W@GRAD)
//   lk_dwconv2d_bias(X, W, Bias) -> Out   (+ grad: X@GRAD, W@GRAD, Bias@GRAD)
// Two ops instead of one with an optional input: an optional *gradient output* is not supported by
// every Paddle 3.x custom-op path (dygraph, static, PIR), two fixed signatures are.
// The kernels live in lk_dwconv_cpu.cc (float32) and lk_dwconv_cuda.cu (float32/float16); this
// file only validates, allocates and dispatches. PADDLE_WITH_CUDA is defined by
// paddle.utils.cpp_extension when the .cu file is compiled into the same extension.
#include <string>
#include <vector>

#include "paddle/extension.h"

#include "lk_dwconv_cpu.h"
#ifdef PADDLE_WITH_CUDA
#include "lk_dwconv_cuda.h"
#endif

namespace {

constexpr int64_t kMaxKernel = 63;

struct Dims {
  int64_t N, C, H, W, K;
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Validation mirrors paddle_lk.ops._check_call; repeated here so a direct call of the raw op
// also gets an error instead of an out-of-bounds read.
Dims check_call(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor* b) {
  PD_CHECK(x.shape().size() == 4, "lk_dwconv2d: x must be 4-D NCHW, got shape ",
           shape_str(x.shape()));
  PD_CHECK(w.shape().size() == 4, "lk_dwconv2d: weight must be 4-D [C, 1, K, K], got shape ",
           shape_str(w.shape()));
  const Dims d{x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3], w.shape()[2]};
  PD_CHECK(w.shape()[0] == d.C && w.shape()[1] == 1,
           "lk_dwconv2d: weight shape ", shape_str(w.shape()), " does not fit x with ", d.C,
           " channels (expected [", d.C, ", 1, K, K])");
  PD_CHECK(w.shape()[2] == w.shape()[3], "lk_dwconv2d: kernel must be square, got ",
           shape_str(w.shape()));
  PD_CHECK(d.K % 2 == 1 && d.K >= 1 && d.K <= kMaxKernel,
           "lk_dwconv2d: kernel size must be odd and in 1..", kMaxKernel, ", got ", d.K);
  PD_CHECK(x.dtype() == w.dtype(), "lk_dwconv2d: x and weight dtypes differ");
  PD_CHECK(x.place() == w.place(), "lk_dwconv2d: x and weight are on different devices");
  if (b) {
    PD_CHECK(b->shape().size() == 1 && b->shape()[0] == d.C, "lk_dwconv2d: bias must have shape [",
             d.C, "], got ", shape_str(b->shape()));
    PD_CHECK(b->dtype() == x.dtype(), "lk_dwconv2d: bias dtype differs from x");
    PD_CHECK(b->place() == x.place(), "lk_dwconv2d: bias and x are on different devices");
  }
  PD_CHECK(x.is_contiguous() && w.is_contiguous() && (!b || b->is_contiguous()),
           "lk_dwconv2d: tensors must be contiguous");
  if (x.is_cpu()) {
    PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, "lk_dwconv2d: CPU kernel supports float32 only");
  } else {
    PD_CHECK(x.is_gpu(), "lk_dwconv2d: only CPU and CUDA tensors are supported");
    PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT16,
             "lk_dwconv2d: CUDA kernel supports float32 and float16 only");
  }
  return d;
}

#ifdef PADDLE_WITH_CUDA
int cuda_dtype(const paddle::Tensor& t) {
  return t.dtype() == paddle::DataType::FLOAT16 ? LK_DTYPE_FLOAT16 : LK_DTYPE_FLOAT32;
}

void check_cuda(cudaError_t err, const char* what) {
  PD_CHECK(err == cudaSuccess, "lk_dwconv2d: CUDA ", what, " failed: ", cudaGetErrorString(err));
}
#endif

[[noreturn]] void no_cuda() {
  PD_THROW("lk_dwconv2d: this build of the op has no CUDA kernels (Paddle without CUDA at build time)");
}

paddle::Tensor forward_impl(const paddle::Tensor& x, const paddle::Tensor& w,
                            const paddle::Tensor* b) {
  const Dims d = check_call(x, w, b);
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  if (x.is_cpu()) {
    lk::dwconv2d_forward_cpu(x.data<float>(), w.data<float>(), b ? b->data<float>() : nullptr,
                             y.data<float>(), d.N, d.C, d.H, d.W, d.K);
    return y;
  }
#ifdef PADDLE_WITH_CUDA
  check_cuda(lk_dwconv2d_forward_cuda(cuda_dtype(x), x.data(), w.data(), b ? b->data() : nullptr,
                                      y.data(), d.N, d.C, d.H, d.W, d.K, x.stream()),
             "forward");
  return y;
#else
  no_cuda();
#endif
}

std::vector<paddle::Tensor> backward_impl(const paddle::Tensor& x, const paddle::Tensor& w,
                                          const paddle::Tensor* b, const paddle::Tensor& dy) {
  const Dims d = check_call(x, w, b);
  PD_CHECK(dy.shape() == x.shape(), "lk_dwconv2d: output gradient shape ", shape_str(dy.shape()),
           " differs from x ", shape_str(x.shape()));
  PD_CHECK(dy.dtype() == x.dtype() && dy.place() == x.place(),
           "lk_dwconv2d: output gradient dtype/device differ from x");
  // A gradient can arrive as a strided view (e.g. after a transpose in the graph).
  const paddle::Tensor g = dy.is_contiguous() ? dy : dy.contiguous();
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dw = paddle::empty(w.shape(), w.dtype(), w.place());
  paddle::Tensor db;
  if (b) db = paddle::empty(b->shape(), b->dtype(), b->place());
  if (x.is_cpu()) {
    lk::dwconv2d_input_grad_cpu(g.data<float>(), w.data<float>(), dx.data<float>(), d.N, d.C, d.H,
                                d.W, d.K);
    lk::dwconv2d_weight_grad_cpu(x.data<float>(), g.data<float>(), dw.data<float>(),
                                 b ? db.data<float>() : nullptr, d.N, d.C, d.H, d.W, d.K);
  } else {
#ifdef PADDLE_WITH_CUDA
    const int dt = cuda_dtype(x);
    check_cuda(lk_dwconv2d_input_grad_cuda(dt, g.data(), w.data(), dx.data(), d.N, d.C, d.H, d.W,
                                           d.K, x.stream()),
               "input grad");
    // float32 accumulates in place; float16 needs a float32 workspace.
    paddle::Tensor ws;
    float* ws_ptr = nullptr;
    if (x.dtype() == paddle::DataType::FLOAT32) {
      ws_ptr = dw.data<float>();
    } else {
      ws = paddle::empty({d.C * d.K * d.K}, paddle::DataType::FLOAT32, x.place());
      ws_ptr = ws.data<float>();
    }
    check_cuda(lk_dwconv2d_weight_grad_cuda(dt, x.data(), g.data(), dw.data(), ws_ptr, d.N, d.C,
                                            d.H, d.W, d.K, x.stream()),
               "weight grad");
    if (b) {
      check_cuda(lk_dwconv2d_bias_grad_cuda(dt, g.data(), db.data(), d.N, d.C, d.H, d.W,
                                            x.stream()),
                 "bias grad");
    }
#else
    no_cuda();
#endif
  }
  if (b) return {dx, dw, db};
  return {dx, dw};
}

// ---- operator functions -------------------------------------------------------------------
std::vector<paddle::Tensor> LkForward(const paddle::Tensor& x, const paddle::Tensor& w) {
  return {forward_impl(x, w, nullptr)};
}

std::vector<paddle::Tensor> LkBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                       const paddle::Tensor& dy) {
  return backward_impl(x, w, nullptr, dy);
}

std::vector<paddle::Tensor> LkBiasForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                          const paddle::Tensor& b) {
  return {forward_impl(x, w, &b)};
}

std::vector<paddle::Tensor> LkBiasBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                           const paddle::Tensor& b, const paddle::Tensor& dy) {
  return backward_impl(x, w, &b, dy);
}

std::vector<std::vector<int64_t>> LkInferShape(const std::vector<int64_t>& x,
                                               const std::vector<int64_t>& w) {
  return {x};
}

std::vector<std::vector<int64_t>> LkBiasInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>& b) {
  return {x};
}

std::vector<paddle::DataType> LkInferDtype(const paddle::DataType& x, const paddle::DataType& w) {
  return {x};
}

std::vector<paddle::DataType> LkBiasInferDtype(const paddle::DataType& x,
                                               const paddle::DataType& w,
                                               const paddle::DataType& b) {
  return {x};
}

std::vector<std::vector<int64_t>> LkGradInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>& dy) {
  return {x, w};
}

std::vector<std::vector<int64_t>> LkBiasGradInferShape(const std::vector<int64_t>& x,
                                                       const std::vector<int64_t>& w,
                                                       const std::vector<int64_t>& b,
                                                       const std::vector<int64_t>& dy) {
  return {x, w, b};
}

}  // namespace

PD_BUILD_OP(lk_dwconv2d)
    .Inputs({"X", "W"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(LkForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LkInferDtype));

PD_BUILD_GRAD_OP(lk_dwconv2d)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .SetKernelFn(PD_KERNEL(LkBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkGradInferShape));

PD_BUILD_OP(lk_dwconv2d_bias)
    .Inputs({"X", "W", "Bias"})
    .Outputs({"Out"})
    .SetKernelFn(PD_KERNEL(LkBiasForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkBiasInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LkBiasInferDtype));

PD_BUILD_GRAD_OP(lk_dwconv2d_bias)
    .Inputs({"X", "W", "Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("Bias")})
    .SetKernelFn(PD_KERNEL(LkBiasBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkBiasGradInferShape));
